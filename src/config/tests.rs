//! Flags to settings: the documented defaults, every flag reaching its setting, and a
//! message for each invalid value.

use super::*;

/// Parses `flags` (with `-r .` unless they name a root) as the command line would, then validates them.
fn parse(flags: &[&str]) -> Result<Config, String> {
    let mut all = flags.to_vec();
    if !flags.contains(&"-r") {
        all.extend(["-r", "."]);
    }
    let args = Args::from_args(&["httpd"], &all).map_err(|exit| exit.output)?;
    Config::from_args(args).map_err(|err| err.0)
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = parse(&[]).unwrap();
    assert!(config.site.root.path().is_absolute());
    assert_eq!(config.workers, 8);
    assert_eq!(config.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        config.deadlines,
        Deadlines {
            idle: Duration::from_secs(5),
            header: Duration::from_secs(10),
            header_min_rate: 100,
            send: Duration::from_secs(30),
        }
    );
    assert_eq!(config.grace, Duration::from_secs(30));
    assert_eq!(config.max_connections, None);
    assert_eq!(config.dispatch, Dispatch::Direct);
    assert_eq!(config.access_log, LogTo::Stderr);
    assert_eq!(config.log_format, LogFormat::Combined);
    assert!(!config.site.list);
    assert_eq!(config.site.health, None);
    assert_eq!(config.site.cache_control, None);
    assert_eq!(config.site.charset.value(), None);
    // The defaults that --help states are the ones in force.
    let help = Args::from_args(&["httpd"], &["--help"]).unwrap_err().output;
    for said in [
        "(default: docroot)",
        "(default: 8)",
        "(default: 127.0.0.1)",
        "(default: 8080)",
        "(default: 5)",
        "(default: 30)",
        "(default: 10)",
        "(default: 100)",
        "(default: direct)",
        "(default: stderr)",
        "(default: combined)",
    ] {
        assert!(help.contains(said), "{said} missing from {help}");
    }
}

#[test]
fn every_flag_reaches_its_setting() {
    let config = parse(&[
        "-w",
        "3",
        "-a",
        "[::1]",
        "-p",
        "80",
        "-t",
        "7",
        "-l",
        "access.log",
        "--log-format",
        "json",
        "--send-timeout",
        "2",
        "--grace",
        "0",
        "--header-timeout",
        "3",
        "--header-min-rate",
        "0",
        "--max-connections",
        "9",
        "--dispatch",
        "defer",
        "--list",
        "--health",
        "/healthz",
        "--cache-control",
        "public, max-age=60",
        "--charset",
        "utf-8",
    ])
    .unwrap();
    assert_eq!(config.workers, 3);
    assert_eq!(config.addr, "[::1]:80".parse().unwrap());
    assert_eq!(
        config.deadlines,
        Deadlines {
            idle: Duration::from_secs(7),
            header: Duration::from_secs(3),
            header_min_rate: 0,
            send: Duration::from_secs(2),
        }
    );
    assert_eq!(config.grace, Duration::ZERO);
    assert_eq!(config.max_connections, Some(9));
    assert_eq!(config.dispatch, Dispatch::Defer);
    assert_eq!(config.access_log, LogTo::File(PathBuf::from("access.log")));
    assert_eq!(config.log_format, LogFormat::Json);
    assert!(config.site.list);
    assert_eq!(config.site.health.as_deref(), Some("/healthz"));
    assert_eq!(
        config.site.cache_control.as_deref(),
        Some("public, max-age=60")
    );
    assert_eq!(config.site.charset.value(), Some("utf-8"));
    assert_eq!(parse(&["-a", "::1"]).unwrap().addr.ip().to_string(), "::1");
    for off in [&["-l", "off"][..], &["--log", "off"]] {
        assert_eq!(parse(off).unwrap().access_log, LogTo::Off, "{off:?}");
    }
    assert_eq!(
        parse(&["-l", "./off"]).unwrap().access_log,
        LogTo::File(PathBuf::from("./off"))
    );
}

#[test]
fn each_invalid_setting_says_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["-r", "/no/such/dir"], "document root '/no/such/dir': "),
        (&["-r", "Cargo.toml"], "is not a directory"),
        (&["-w", "0"], "--workers must be at least 1"),
        (&["-t", "0"], "--timeout must be at least 1 second"),
        (
            &["-a", "localhost:80"],
            "invalid address 'localhost:80': expected an IP address such as 127.0.0.1 or ::1",
        ),
        (
            &["--send-timeout", "0"],
            "--send-timeout must be at least 1 second",
        ),
        (
            &["--header-timeout", "0"],
            "--header-timeout must be at least 1 second",
        ),
        (
            &["--max-connections", "0"],
            "--max-connections must be at least 1",
        ),
        (
            &["--health", "healthz"],
            "--health 'healthz': expected a URL path such as /healthz",
        ),
        (&["--health", "/a b"], "--health '/a b'"),
        (&["--health", "/x?y"], "--health '/x?y'"),
        (&["--health", "/\n"], "--health '/\n'"),
        (
            &["--cache-control", ""],
            "--cache-control '': expected a header value",
        ),
        (
            &["--cache-control", "a\r\nSet-Cookie: x=1"],
            "--cache-control 'a\r\n",
        ),
        (
            &["--cache-control", "caf\u{e9}"],
            "--cache-control 'caf\u{e9}'",
        ),
        (
            &["--error-pages", "/no/such/dir"],
            "--error-pages '/no/such/dir'",
        ),
        (
            &["--charset", ""],
            "--charset \"\": expected a charset name such as utf-8",
        ),
        (&["--charset", "utf 8"], "--charset \"utf 8\": expected"),
        (&["--charset", "utf-8; x=y"], "--charset \"utf-8; x=y\""),
        (&["--charset", "\"utf-8\""], "--charset \"\\\"utf-8\\\"\""),
        (
            &["--charset", "utf-8\r\nSet-Cookie: a=b"],
            "--charset \"utf-8\\r\\n",
        ),
        (&["--charset", "caf\u{e9}"], "--charset \"caf\u{e9}\""),
        (
            &["--dispatch", "fast"],
            "--dispatch 'fast': expected direct or defer",
        ),
        (
            &["--log-format", "apache"],
            "--log-format 'apache': expected combined, common or json",
        ),
        // The first problem in flag order is the one reported.
        (&["-t", "0", "-w", "0"], "--workers must be at least 1"),
        (
            &["--dispatch", "x", "-t", "0"],
            "--timeout must be at least 1 second",
        ),
    ];
    for (flags, expected) in cases {
        match parse(flags) {
            Ok(_) => panic!("{flags:?} accepted"),
            Err(message) => assert!(
                message.contains(expected),
                "{flags:?}: {message:?} does not say {expected:?}"
            ),
        }
    }
    for mode in ["direct", "defer"] {
        assert!(parse(&["--dispatch", mode]).is_ok(), "{mode}");
    }
    // Any token is a charset name: the registry's names are tokens.
    for name in [
        "utf-8",
        "UTF-8",
        "iso-8859-1",
        "windows-1252",
        "Shift_JIS",
        "x-mac+roman",
    ] {
        let config = parse(&["--charset", name]).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(config.site.charset.value(), Some(name));
    }
    for format in ["combined", "common", "json"] {
        assert!(parse(&["--log-format", format]).is_ok(), "{format}");
    }
}
