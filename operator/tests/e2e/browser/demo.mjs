// Two users open the chatcluster demo page through HAProxy in headless chromium (separate
// browser contexts, so separate cookie jars, like two people), join one room, and each sees the
// other's message. Prints one JSON line with what happened; screenshots go to <out-dir>.
//
// usage: node demo.mjs <demo-page-url> <out-dir>
// CHROMIUM overrides the browser path (default /usr/bin/chromium, the Debian package).
import { chromium } from "playwright-core";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node demo.mjs <demo-page-url> <out-dir>");
  process.exit(2);
}
const TIMEOUT = 15000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
});
const result = {};
try {
  const pages = {};
  for (const name of ["alice", "bob"]) {
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(url);
    await page.fill("#name", name);
    await page.fill("#room", "lobby");
    await page.click("#connect");
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("connected as"));
    await page.waitForFunction(() => document.querySelector("#active-room").textContent === "lobby");
    result[`${name}_node`] = (await page.textContent("#node")).trim();
    pages[name] = page;
  }
  // Both in the room: each sees the other in the member list before anyone speaks.
  await pages.alice.waitForSelector('#members li[data-user="bob"]');
  const say = async (from, to, text) => {
    await pages[from].fill("#message", text);
    await pages[from].click("#send");
    const li = pages[to].locator(`#messages li[data-from="${from}"]`, { hasText: text });
    await li.first().waitFor();
    return li.first().getAttribute("data-offset");
  };
  result.alice_to_bob_offset = await say("alice", "bob", "hello bob, from alice's tab");
  result.bob_to_alice_offset = await say("bob", "alice", "hi alice, bob here");
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: `${outDir}/${name}.png`, fullPage: true });
  }
  result.ok = true;
} catch (err) {
  result.ok = false;
  result.error = String(err && err.stack || err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
