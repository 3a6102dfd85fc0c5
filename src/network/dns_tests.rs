//! Unit tests of `dns.rs`: records, decisions, the responder on loopback.

use super::*;
use hickory_proto::op::Query;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 10);
const DB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 11);

fn message(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    message(id, name, qtype).to_vec().unwrap()
}

fn records() -> Records {
    let mut r = Records::default();
    r.insert(&["web".into(), "Alias".into(), "0123456789ab".into()], WEB);
    r.insert(&["db".into(), "alias.".into()], DB);
    r
}

fn answer(d: Decision) -> Message {
    match d {
        Decision::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn addrs(m: &Message) -> Vec<Ipv4Addr> {
    m.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect()
}

#[test]
fn decide_table() {
    use RecordType::{A, AAAA, MX};
    use ResponseCode::{NXDomain, NoError};
    let recs = records();
    // (name, type, has upstream, None = forward / Some((rcode, addresses)))
    type Want = Option<(ResponseCode, &'static [Ipv4Addr])>;
    let cases: &[(&str, RecordType, bool, Want)] = &[
        ("web", A, true, Some((NoError, &[WEB]))),
        ("WEB.", A, true, Some((NoError, &[WEB]))),
        ("web.dns.rl", A, false, Some((NoError, &[WEB]))),
        ("Web.DNS.Rl.", A, true, Some((NoError, &[WEB]))),
        ("0123456789AB", A, true, Some((NoError, &[WEB]))),
        ("alias", A, true, Some((NoError, &[WEB, DB]))),
        ("db", AAAA, true, Some((NoError, &[]))),
        ("db.dns.rl", MX, false, Some((NoError, &[]))),
        ("dns.rl", A, true, Some((NoError, &[]))),
        ("nope.dns.rl", A, true, Some((NXDomain, &[]))),
        ("example.com", A, true, None),
        ("web.example.com", A, true, None),
        ("example.com", A, false, Some((NXDomain, &[]))),
        ("example.com", AAAA, false, Some((NXDomain, &[]))),
    ];
    for (i, (name, qtype, up, want)) in cases.iter().enumerate() {
        let id = 0x1000 + i as u16;
        let q = query(id, name, *qtype);
        let got = decide(&q, &recs, *up);
        let Some((rcode, ips)) = want else {
            assert_eq!(got, Decision::Forward, "{name} {qtype}");
            continue;
        };
        let m = answer(got);
        assert_eq!(m.metadata.id, id, "{name}");
        assert_eq!(m.metadata.message_type, MessageType::Response, "{name}");
        assert!(m.metadata.recursion_desired, "{name}");
        assert_eq!(m.metadata.recursion_available, *up, "{name}");
        assert_eq!(m.metadata.response_code, *rcode, "{name} {qtype}");
        assert_eq!(m.queries, Message::from_vec(&q).unwrap().queries, "{name}");
        assert_eq!(addrs(&m), *ips, "{name} {qtype}");
        assert!(m.answers.iter().all(|r| r.name.to_ascii() == m.queries[0].name().to_ascii()), "{name}");
    }
}

#[test]
fn decide_malformed() {
    let recs = records();
    // A header announcing one question that is not there: FORMERR, same id.
    let header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let m = answer(decide(&header, &recs, true));
    assert_eq!((m.metadata.id, m.metadata.response_code), (0x1234, ResponseCode::FormErr));
    assert!(m.queries.is_empty());
    // Not even a header.
    assert_eq!(decide(&[1, 2, 3], &recs, true), Decision::Drop);
    // A response is never answered, even when malformed.
    assert_eq!(decide(&[0x12, 0x34, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 0], &recs, true), Decision::Drop);
    let mut resp = message(7, "web", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert_eq!(decide(&resp.to_vec().unwrap(), &recs, true), Decision::Drop);
    // Two questions.
    let mut two = message(8, "web", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
    let m = answer(decide(&two.to_vec().unwrap(), &recs, true));
    assert_eq!((m.metadata.id, m.metadata.response_code), (8, ResponseCode::FormErr));
    // Another opcode.
    let mut status = message(9, "web", RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(answer(decide(&status.to_vec().unwrap(), &recs, true)).metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn reverse_and_removal() {
    let mut recs = records();
    let ptr = |recs: &Records| decide(&query(5, "10.0.89.10.in-addr.arpa.", RecordType::PTR), recs, true);
    let m = answer(ptr(&recs));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    match m.answers.first().map(|r| &r.data) {
        Some(RData::PTR(PTR(target))) => assert_eq!(target.to_ascii(), "web.dns.rl."),
        other => panic!("expected a PTR, got {other:?}"),
    }
    recs.remove_ip(WEB);
    assert!(recs.lookup("web").is_empty());
    assert_eq!(recs.lookup("ALIAS.dns.rl."), [DB]);
    assert_eq!(ptr(&recs), Decision::Forward);
}

#[test]
fn edns_and_truncation() {
    let mut recs = Records::default();
    for i in 0..100 {
        recs.insert(&["many".into()], Ipv4Addr::new(10, 89, 1, i));
    }
    let m = answer(decide(&query(1, "many", RecordType::A), &recs, true));
    assert!(m.metadata.truncation && m.answers.is_empty() && m.edns.is_none());
    let mut big = message(2, "many", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    big.edns = Some(edns);
    let m = answer(decide(&big.to_vec().unwrap(), &recs, true));
    assert!(!m.metadata.truncation && m.edns.is_some());
    assert_eq!(addrs(&m).len(), 100);
}

/// Waits (at most 5 s) until one of the responder's sockets is readable, then handles it.
fn pump(r: &mut Responder, recs: &Records) {
    {
        let mut fds: Vec<PollFd> = r.fds().into_iter().map(|fd| PollFd::new(fd, PollFlags::POLLIN)).collect();
        assert!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap() > 0, "the responder got nothing");
    }
    r.handle(recs, &HashMap::new()).unwrap();
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn recv(client: &UdpSocket) -> Message {
    let mut buf = [0u8; 4096];
    let len = client.recv(&mut buf).unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

#[test]
fn responder_answers_and_forwards() {
    let (listen, upstream, client) = (udp(), udp(), udp());
    let server = listen.local_addr().unwrap();
    let mut r = Responder::new(listen, Some(upstream.local_addr().unwrap())).unwrap();
    assert_eq!(r.fds().len(), 2);
    let recs = records();
    let mut buf = [0u8; 4096];

    client.send_to(&query(0x1111, "web.dns.rl.", RecordType::A), server).unwrap();
    pump(&mut r, &recs);
    let m = recv(&client);
    assert_eq!((m.metadata.id, addrs(&m)), (0x1111, vec![WEB]));

    client.send_to(&query(0x2222, "example.org.", RecordType::A), server).unwrap();
    pump(&mut r, &recs);
    assert!(r.next_deadline().is_some());
    let (len, from) = upstream.recv_from(&mut buf).unwrap();
    let fwd = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(fwd.queries.len(), 1);
    assert_eq!(fwd.queries[0].name().to_ascii(), "example.org.");
    assert_eq!(fwd.queries[0].query_type(), RecordType::A);
    let mut reply = Message::response(fwd.metadata.id, OpCode::Query);
    reply.queries = fwd.queries.clone();
    reply.add_answer(Record::from_rdata(fwd.queries[0].name().clone(), 60, RData::A(A::new(192, 0, 2, 7))));
    upstream.send_to(&reply.to_vec().unwrap(), from).unwrap();
    pump(&mut r, &recs);
    let m = recv(&client);
    assert_eq!((m.metadata.id, addrs(&m)), (0x2222, vec![Ipv4Addr::new(192, 0, 2, 7)]));
    assert!(r.pending.is_empty() && r.next_deadline().is_none());
}

#[test]
fn responder_survives_a_dead_upstream() {
    let (listen, client) = (udp(), udp());
    let dead = udp().local_addr().unwrap();
    let server = listen.local_addr().unwrap();
    let mut r = Responder::new(listen, Some(dead)).unwrap();
    let recs = records();
    client.send_to(&query(1, "example.org", RecordType::A), server).unwrap();
    // The port-unreachable error for the forwarded query makes reading upstream fail (in this
    // handle or the next): that is not the responder's failure, and it still answers.
    pump(&mut r, &recs);
    client.send_to(&query(2, "db", RecordType::A), server).unwrap();
    pump(&mut r, &recs);
    let m = recv(&client);
    assert_eq!((m.metadata.id, addrs(&m)), (2, vec![DB]));
}
