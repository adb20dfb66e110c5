//! Command mode with ipft's stdout piped into the program it is for: `-w -`
//! into tshark, `-o json` into jq. The command's own stdout (ping's lines)
//! must not reach that pipe: it goes to ipft's stderr. Real marked pings on
//! loopback, `-b tracepoint`; each test owns a mark (see `marks`).
use std::{
    io::Read,
    process::{Child, Command, Stdio},
};

use ipft_tests::{
    marks,
    packets::PING_PATH,
    parse::{in_order, parse_json_packets, parse_table, row_names, table_header, Tracer},
    tshark, Ipft, Output, Setup, StdoutMode,
};

/// `ipft -b tracepoint -m MARK ARGS -- ping -m MARK -c 1 127.0.0.1`, with
/// ping's output left as it is, and ipft's stdout for the caller.
fn spawn_around_ping(mark: u32, args: &[&str]) -> Ipft {
    let (hex, decimal) = (format!("{mark:#x}"), mark.to_string());
    let ipft = ["-b", "tracepoint", "-m", &hex];
    let ping = [
        "--",
        "ping",
        "-m",
        &decimal,
        "-c",
        "1",
        "-W",
        "5",
        "127.0.0.1",
    ];
    let caller = Setup {
        stdout: StdoutMode::Caller,
        ..Setup::default()
    };
    Ipft::spawn_with(&[&ipft[..], args, &ping].concat(), caller)
}

/// ping's own lines, on ipft's stderr; ipft exits with ping's status.
fn assert_pings_lines_on_stderr(out: &Output) {
    assert_eq!(out.code(), Some(0), "ping's status\n{out}");
    for line in ["PING 127.0.0.1", "1 packets transmitted, 1 received"] {
        assert!(
            out.stderr.contains(line),
            "ping's {line:?} on stderr\n{out}"
        );
    }
}

fn read_all(mut from: impl Read) -> String {
    let mut text = String::new();
    from.read_to_string(&mut text).unwrap();
    text
}

/// Whether a reader succeeded, and what it printed on stdout and stderr.
fn finish(mut reader: Child) -> (bool, String, String) {
    let stdout = read_all(reader.stdout.take().unwrap());
    let stderr = read_all(reader.stderr.take().unwrap());
    (reader.wait().unwrap().success(), stdout, stderr)
}

/// `ipft -w - -- ping … | tshark -r -`: tshark reads the echo request's
/// frames, the first row's and the last one's of the table (on stderr).
fn pcapng_on_stdout_pipes_into_tshark() {
    let mut ipft = spawn_around_ping(marks::PIPE_PCAPNG, &["-w", "-"]);
    let mut tshark = tshark::spawn_reader(ipft.take_stdout(), &[]);
    let out = ipft.wait_exit();
    let stdout = read_all(tshark.stdout.take().unwrap());
    let frames = tshark::finish_reader(tshark, stdout.as_bytes()).clean(&out.to_string());

    assert_pings_lines_on_stderr(&out);
    let header = format!("\n{}\n", table_header(Tracer::Function));
    let table = out.stderr.find(&header).map(|at| &out.stderr[at..]);
    let table = table.unwrap_or_else(|| panic!("no table on stderr\n{out}"));
    let packets = parse_table(table);
    assert_eq!(packets.len(), 1, "one echo request\n{out}");
    let names = row_names(&packets[0]);
    let ends = [names[0], names[names.len() - 1]];
    let functions: Vec<&str> = frames.iter().map(tshark::Frame::function).collect();
    assert_eq!(functions, ends, "{frames:#?}\n{out}");
    for f in &frames {
        let flow = (f.ip_src.as_str(), f.ip_dst.as_str(), f.icmp_type.as_str());
        assert_eq!(flow, ("127.0.0.1", "127.0.0.1", "8"), "{f:?}\n{out}");
    }
}

/// `ipft -o json -- ping … | jq -c .`: jq parses all that ipft wrote (a
/// JSON value per line), the echo request's path. (Not `jq -R fromjson`,
/// line by line: jq 1.6 exits 0 when a line is not JSON.)
fn json_on_stdout_pipes_into_jq() {
    let mut ipft = spawn_around_ping(marks::PIPE_JSON, &["-o", "json"]);
    let jq = Command::new("jq")
        .args(["-c", "."])
        .stdin(ipft.take_stdout())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jq (Debian package jq; `cargo xtask test` installs it)");
    let out = ipft.wait_exit();
    let (ok, stdout, stderr) = finish(jq);

    assert!(ok, "jq could not parse ipft's stdout: {stderr}\n{out}");
    assert_pings_lines_on_stderr(&out);
    let packets = parse_json_packets(&stdout);
    assert_eq!(packets.len(), 1, "one echo request\n{stdout}\n{out}");
    let names = row_names(&packets[0]);
    assert!(in_order(&names, PING_PATH), "{names:?}\n{out}");
}

ipft_tests::tests! {
    pcapng_on_stdout_pipes_into_tshark,
    json_on_stdout_pipes_into_jq,
}
