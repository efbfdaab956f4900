//! The sidecar with a real HAProxy 2.6 and real chat-nodes on loopback: HAProxy's view of each
//! server (`show servers state`, `show stat`) follows the nodes' loads as the sidecars report
//! them; two HAProxy processes still place new clients on the node with more free capacity; a
//! draining node takes no new upgrades even from cookie holders while its open WebSockets keep
//! working; a killed node is reported down within two poll intervals.

mod cluster;
mod support;

use std::time::{Duration, Instant};

use cluster::{Client, POLL_MS, Pod, Proxy, connect, wait_line};

const WITHIN: Duration = Duration::from_secs(5);

async fn open_many(addr: std::net::SocketAddr, cookie: Option<&str>, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(addr, cookie).await.expect("websocket upgrade"));
    }
    clients
}

fn print_evidence(label: &str, proxy: &Proxy) {
    println!("--- {label}: show servers state");
    for (name, op, weight) in proxy.servers() {
        println!("    {name} srv_op_state={op} srv_uweight={weight}");
    }
    println!("--- {label}: show stat");
    for row in proxy.haproxy.show_stat().unwrap() {
        if row["pxname"] == "chat" && row["svname"] != "FRONTEND" && row["svname"] != "BACKEND" {
            println!(
                "    {} status={:?} weight={} scur={} last_agt={:?}",
                row["svname"], row["status"], row["weight"], row["scur"], row["last_agt"]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_weights_and_states_follow_node_load() {
    let redis = testkit::RedisServer::start().unwrap();
    let a = Pod::start("node-a", &redis.url(), 10).await;
    let b = Pod::start("node-b", &redis.url(), 10).await;
    let proxy = Proxy::start(&[&a, &b]);
    proxy.wait_for("node-a", "2", Some("100"), WITHIN).await;
    proxy.wait_for("node-b", "2", Some("100"), WITHIN).await;

    // Load node-a directly (HAProxy never sees these connections): 4 of 10 used -> 60%.
    let mut on_a = open_many(a.node.ws, None, 4).await;
    wait_line(&a, "up ready 60%").await;
    proxy.wait_for("node-a", "2", Some("60"), WITHIN).await;
    proxy.wait_for("node-b", "2", Some("100"), WITHIN).await;
    assert_eq!(proxy.stat("node-a")["weight"], "60");
    print_evidence("node-a 4/10", &proxy);

    // Fill it: HAProxy marks it DOWN through the agent, with the reason.
    on_a.extend(open_many(a.node.ws, None, 6).await);
    wait_line(&a, "down #full").await;
    proxy.wait_for("node-a", "0", None, WITHIN).await;
    let row = proxy.stat("node-a");
    assert_eq!(row["status"], "DOWN (agent)");
    assert_eq!(row["last_agt"], "via agent : down (full)");
    print_evidence("node-a full", &proxy);

    // New clients through HAProxy all go to node-b while node-a is full.
    for client in open_many(proxy.addr, None, 3).await {
        assert_eq!(client.node, "node-b");
    }
    // The full node's open connections are untouched.
    for client in &mut on_a {
        client.ping().await.unwrap();
    }

    // Free capacity again: 2 of 10 used (below the 95% release mark) -> back up at 80%.
    on_a.truncate(2);
    wait_line(&a, "up ready 80%").await;
    proxy.wait_for("node-a", "2", Some("80"), WITHIN).await;
    assert_eq!(proxy.stat("node-a")["status"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_place_new_clients_on_the_node_with_more_free_capacity() {
    let redis = testkit::RedisServer::start().unwrap();
    let a = Pod::start("node-a", &redis.url(), 20).await;
    let b = Pod::start("node-b", &redis.url(), 20).await;
    let first = Proxy::start(&[&a, &b]);
    let second = Proxy::start(&[&a, &b]);

    // 16 sticky clients on one node through the first proxy: the first client picks a node, the
    // others present its cookie.
    let pinned = connect(first.addr, None).await.unwrap();
    let cookie = pinned
        .set_cookie
        .clone()
        .expect("HAProxy inserts its cookie");
    let busy = pinned.node.clone();
    let mut preload = vec![pinned];
    preload.extend(open_many(first.addr, Some(&cookie), 15).await);
    assert!(
        preload.iter().all(|c| c.node == busy),
        "cookie holders stay on {busy}"
    );
    let (busy_pod, idle_name) = if busy == "node-a" {
        (&a, "node-b")
    } else {
        (&b, "node-a")
    };
    wait_line(busy_pod, "up ready 20%").await;
    second.wait_for(&busy, "2", Some("20"), WITHIN).await;
    second.wait_for(idle_name, "2", Some("100"), WITHIN).await;
    print_evidence("second proxy before new clients", &second);

    // The second proxy has made no connection to either node, so plain leastconn would split
    // new clients evenly. With the agent weights nearly all of them go to the idle node.
    let fresh = open_many(second.addr, None, 6).await;
    let on_idle = fresh.iter().filter(|c| c.node == idle_name).count();
    println!("second proxy placed {on_idle} of 6 new clients on {idle_name}");
    assert!(
        on_idle >= 5,
        "only {on_idle} of 6 new clients went to the idle node {idle_name}"
    );

    // Control: a third proxy without agent checks splits its new clients evenly, busy or not.
    let plain = Proxy::start_without_agent(&[&a, &b]);
    plain.wait_for(&busy, "2", None, WITHIN).await;
    plain.wait_for(idle_name, "2", None, WITHIN).await;
    let control = open_many(plain.addr, None, 6).await;
    let plain_on_idle = control.iter().filter(|c| c.node == idle_name).count();
    println!("plain leastconn placed {plain_on_idle} of 6 new clients on {idle_name}");
    assert!(
        plain_on_idle <= 4,
        "the control should not favour the idle node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_node_takes_no_new_upgrades_not_even_from_its_cookie_holders() {
    let redis = testkit::RedisServer::start().unwrap();
    let a = Pod::start("node-a", &redis.url(), 50).await;
    let b = Pod::start("node-b", &redis.url(), 50).await;
    let proxy = Proxy::start(&[&a, &b]);
    proxy.wait_for("node-a", "2", Some("100"), WITHIN).await;
    proxy.wait_for("node-b", "2", Some("100"), WITHIN).await;

    // Three clients on one node through HAProxy, sharing its cookie.
    let first = connect(proxy.addr, None).await.unwrap();
    let cookie = first.set_cookie.clone().expect("cookie inserted");
    let target = first.node.clone();
    let mut open = vec![first];
    open.extend(open_many(proxy.addr, Some(&cookie), 2).await);
    assert!(open.iter().all(|c| c.node == target));
    let (draining, other) = if target == "node-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    for client in &mut open {
        client.join("lobby").await.unwrap();
    }

    draining.node.drain().await;
    wait_line(draining, "down #draining").await;
    proxy.wait_for(&target, "0", None, WITHIN).await;
    let row = proxy.stat(&target);
    assert_eq!(row["status"], "DOWN (agent)");
    assert_eq!(row["last_agt"], "via agent : down (draining)");
    assert_eq!(
        row["check_status"], "L7OK",
        "the HTTP health check still passes"
    );
    print_evidence("draining", &proxy);

    // A returning client presents the draining node's cookie: it lands on the other node and
    // is given that node's cookie.
    for _ in 0..3 {
        let returning = connect(proxy.addr, Some(&cookie)).await.unwrap();
        assert_eq!(returning.node, other.node.name);
        let new_cookie = returning.set_cookie.clone().expect("a new cookie is set");
        assert_ne!(new_cookie, cookie);
        // And that cookie keeps it on the other node.
        let again = connect(proxy.addr, Some(&new_cookie)).await.unwrap();
        assert_eq!(again.node, other.node.name);
        assert_eq!(
            again.set_cookie, None,
            "indirect: a valid cookie is not set again"
        );
    }

    // The drain closes one connection at once and the rest over 60 s; those still open keep
    // exchanging messages through HAProxy.
    let mut alive = Vec::new();
    for mut client in open {
        match client.ping().await {
            Ok(()) => alive.push(client),
            Err(err) => println!("a tunnel to the draining node ended: {err}"),
        }
    }
    assert!(
        alive.len() >= 2,
        "only {} of 3 tunnels survived the drain start",
        alive.len()
    );
    alive[0].say("lobby", "still-here").await.unwrap();
    alive[1].expect_message("still-here").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_is_reported_down_within_two_poll_intervals() {
    let redis = testkit::RedisServer::start().unwrap();
    let mut a = Pod::start("node-a", &redis.url(), 10).await;
    let b = Pod::start("node-b", &redis.url(), 10).await;
    let proxy = Proxy::start(&[&a, &b]);
    proxy.wait_for("node-a", "2", Some("100"), WITHIN).await;

    let killed_at = Instant::now();
    a.node.kill();
    let took = a.sidecar.wait_for_line("down #unreachable", WITHIN).await;
    println!(
        "sidecar reported down {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(
        took <= Duration::from_millis(2 * POLL_MS + 50),
        "down after {took:?}, poll interval {POLL_MS} ms"
    );
    proxy.wait_for("node-a", "0", None, WITHIN).await;
    assert_eq!(
        proxy.stat("node-a")["last_agt"],
        "via agent : down (unreachable)"
    );
    print_evidence("node-a killed", &proxy);
    for client in open_many(proxy.addr, None, 2).await {
        assert_eq!(client.node, "node-b");
    }
}

/// Why the sidecar keeps answering after SIGTERM: once HAProxy cannot reach the agent it keeps
/// the server's last state, so a node that starts draining after its sidecar left stays `UP` and
/// still receives its cookie holders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_keeps_the_last_state_when_the_agent_is_gone() {
    let redis = testkit::RedisServer::start().unwrap();
    let mut a = Pod::start_with("node-a", &redis.url(), 10, |c| c.shutdown_deadline_ms = 0).await;
    let b = Pod::start("node-b", &redis.url(), 10).await;
    let proxy = Proxy::start(&[&a, &b]);
    let _load = open_many(a.node.ws, None, 5).await;
    proxy.wait_for("node-a", "2", Some("50"), WITHIN).await;

    a.sidecar.terminate();
    tokio::time::timeout(WITHIN, &mut a.sidecar.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    a.node.drain().await;
    // Several agent intervals later HAProxy still has the last reply.
    tokio::time::sleep(Duration::from_millis(5 * cluster::AGENT_INTER_MS)).await;
    let row = proxy.stat("node-a");
    print_evidence("agent gone, node draining", &proxy);
    assert_eq!(row["status"], "UP");
    assert_eq!(row["weight"], "50");
    assert_eq!(
        row["agent_status"], "L4CON",
        "HAProxy cannot connect to the agent"
    );
}
