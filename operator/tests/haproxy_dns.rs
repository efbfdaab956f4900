//! The rendered DNS-discovery configuration, run by a real HAProxy against a small fake DNS
//! server that plays the headless Service's SRV records: nodes that appear fill free slots
//! without a reload, a sticky cookie keeps a client on its node, and a node that leaves DNS
//! (a draining pod that is no longer ready) goes to maintenance while the WebSockets it holds
//! stay open.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatcluster_operator::crd::ChatCluster;
use chatcluster_operator::haproxy_cfg::{
    COOKIE_KEY_ENV, Discovery, HaproxyParams, render_haproxy_cfg,
};
use testkit::{Haproxy, free_port};

const SRV: &str = "_ws._tcp.chat-node.default.svc.cluster.local";
/// A WebSocket handshake (RFC 6455's example key; HAProxy checks the handshake headers).
const UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Answers SRV queries for [`SRV`] with one record per port in `ports` (targets `nodeN.test`),
/// with the targets' A records (127.0.0.1) in the additional section, as cluster DNS does.
fn fake_dns(ports: Arc<Mutex<Vec<u16>>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if let Some(reply) = answer(&buf[..n], &ports.lock().unwrap()) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    addr
}

fn encode_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn answer(query: &[u8], ports: &[u16]) -> Option<Vec<u8>> {
    let (mut pos, mut labels) = (12, Vec::new());
    while *query.get(pos)? != 0 {
        let len = query[pos] as usize;
        labels.push(String::from_utf8_lossy(query.get(pos + 1..pos + 1 + len)?).to_lowercase());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos + 1)?, *query.get(pos + 2)?]);
    let question = &query[12..pos + 5];
    let name = labels.join(".");
    let targets: Vec<(String, u16)> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("node{i}.test"), *p))
        .collect();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut additional: Vec<Vec<u8>> = Vec::new();
    let a_record = |target: &str| {
        let mut rr = Vec::new();
        encode_name(&mut rr, target);
        rr.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
        rr
    };
    if qtype == 33 && name == SRV {
        for (target, port) in &targets {
            let mut rdata = vec![0, 0, 0, 10];
            rdata.extend_from_slice(&port.to_be_bytes());
            encode_name(&mut rdata, target);
            let mut rr = vec![0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 5];
            rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            rr.extend_from_slice(&rdata);
            answers.push(rr);
            additional.push(a_record(target));
        }
    } else if qtype == 1 && targets.iter().any(|(t, _)| *t == name) {
        answers.push(a_record(&name));
    }
    let known = name == SRV || targets.iter().any(|(t, _)| *t == name);
    let rcode = if known { 0 } else { 3 };
    let mut reply = query[..2].to_vec();
    reply.extend_from_slice(&[0x85, 0x80 | rcode, 0, 1]);
    reply.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0]);
    reply.extend_from_slice(&(additional.len() as u16).to_be_bytes());
    reply.extend_from_slice(question);
    answers
        .into_iter()
        .chain(additional)
        .for_each(|rr| reply.extend_from_slice(&rr));
    Some(reply)
}

/// Serves `respond(request_head)` on every connection of `listener`, one thread each.
fn serve(listener: TcpListener, respond: impl Fn(&str, TcpStream) + Send + Sync + 'static) {
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                while reader.read_line(&mut head).map(|n| n > 0).unwrap_or(false) {
                    if head.ends_with("\r\n\r\n") {
                        break;
                    }
                }
                respond(&head.to_lowercase(), stream);
            });
        }
    });
}

/// A chat node stand-in: upgrades WebSocket requests and echoes, answers other requests.
fn backend(id: u32) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    serve(listener, move |head, mut stream| {
        if head.contains("upgrade: websocket") {
            let _ = write!(
                stream,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nX-Backend: {id}\r\n\r\n"
            );
            let mut buf = [0u8; 256];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        } else {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nX-Backend: {id}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

/// Sends a request head and returns the response head.
fn request(stream: &mut TcpStream, extra: &str) -> String {
    write!(stream, "GET /ws HTTP/1.1\r\nHost: chat\r\n{extra}\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    while reader.read_line(&mut head).unwrap() > 0 && !head.ends_with("\r\n\r\n") {}
    head
}

/// The value of header `name` (lower case, with the colon), matched case-insensitively.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find(|l| l.len() >= name.len() && l[..name.len()].eq_ignore_ascii_case(name))
        .map(|l| l[name.len()..].trim())
}

fn wait_for(
    proxy: &Haproxy,
    what: &str,
    ok: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let servers: Vec<(String, String)> = proxy
            .show_stat()
            .unwrap()
            .into_iter()
            .filter(|r| r["pxname"] == "chat_nodes" && r["svname"].starts_with("chat"))
            .map(|r| (r["svname"].clone(), r["status"].clone()))
            .collect();
        if ok(&servers) {
            return servers;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {servers:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn up(servers: &[(String, String)]) -> usize {
    servers.iter().filter(|(_, s)| s == "UP").count()
}

#[test]
fn dns_slots_fill_without_reload_and_removed_nodes_keep_their_websockets() {
    let health = TcpListener::bind("127.0.0.1:0").unwrap();
    let check_port = health.local_addr().unwrap().port();
    serve(health, |_, mut s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let agent_port = agent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in agent.incoming().flatten() {
            let _ = s.write_all(b"up ready 100%\n");
        }
    });
    let (b1, b2) = (backend(1), backend(2));
    let records = Arc::new(Mutex::new(vec![b1]));
    let dns = fake_dns(records.clone());
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let spec = ChatCluster::test().spec;
    let proxy = Haproxy::start_with_env(
        |socket| {
            let params = HaproxyParams::from_spec(
                "test",
                &spec,
                &front.to_string(),
                &format!("127.0.0.1:{}", free_port()),
                &socket.display().to_string(),
            );
            let discovery = Discovery::Dns {
                srv: SRV.into(),
                slots: 4,
                check_port,
                agent_port,
            };
            // The pod reads its nameservers from resolv.conf; here the fake DNS is the nameserver.
            render_haproxy_cfg(&params, &discovery)
                .replace("parse-resolv-conf", &format!("nameserver fake {dns}"))
        },
        front,
        &[(COOKIE_KEY_ENV, "test-cookie-key")],
    )
    .unwrap();
    let pid = proxy.pid();
    wait_for(&proxy, "the first node UP", |s| up(s) == 1 && s.len() == 4);

    // A WebSocket to node 1, and a sticky cookie for it.
    let mut ws = TcpStream::connect(front).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = request(&mut ws, UPGRADE);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(header(&head, "x-backend:"), Some("1"));
    let mut plain = TcpStream::connect(front).unwrap();
    let head = request(&mut plain, "Connection: close\r\n");
    let cookie = header(&head, "set-cookie:")
        .expect("HAProxy inserts the sticky cookie")
        .to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("CHATNODE="), "{cookie}");

    // Scale up: the new node takes a free slot from DNS; same process, no reload.
    records.lock().unwrap().push(b2);
    wait_for(&proxy, "two nodes UP", |s| up(s) == 2);
    assert_eq!(proxy.pid(), pid);
    for _ in 0..6 {
        let mut s = TcpStream::connect(front).unwrap();
        let head = request(
            &mut s,
            &format!("Cookie: {cookie}\r\nConnection: close\r\n"),
        );
        assert_eq!(
            header(&head, "x-backend:"),
            Some("1"),
            "the cookie pins the client: {head}"
        );
    }

    // Node 1 leaves DNS (a draining pod is no longer ready): its slot goes to maintenance...
    records.lock().unwrap().retain(|p| *p != b1);
    wait_for(&proxy, "node 1 in maintenance", |s| {
        up(s) == 1 && s.iter().any(|(_, st)| st.contains("MAINT"))
    });
    // ... but the WebSocket it holds stays open and working.
    ws.write_all(b"still here").unwrap();
    let mut echo = [0u8; 10];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still here");
    // A client holding node 1's cookie is redispatched to a live node.
    let mut s = TcpStream::connect(front).unwrap();
    let head = request(
        &mut s,
        &format!("Cookie: {cookie}\r\nConnection: close\r\n"),
    );
    assert_eq!(header(&head, "x-backend:"), Some("2"), "{head}");
}
