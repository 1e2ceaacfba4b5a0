use super::*;

fn root() -> PathBuf {
    PathBuf::from("/r")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut c = Config::defaults(&root());
    c.apply_bytes(text.as_bytes(), Path::new("/t.conf"))?;
    Ok(c)
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = under(dir, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults_match_the_original() {
    let c = Config::defaults(Path::new("/"));
    assert_eq!(c.server, "https://clr.telemetry.intel.com/v3/collector");
    assert_eq!(c.socket_path, Path::new("/run/telem-0"));
    assert_eq!(c.spool_dir, Path::new("/var/spool/telemetry"));
    assert_eq!(c.rate_limit_strategy, RateLimitStrategy::Spool);
    assert_eq!(c.cainfo, None);
    assert_eq!(c.tidheader, DEFAULT_TIDHEADER);
    assert_eq!(c.record_expiry, 1200);
    assert_eq!(c.spool_max_size, Some(5120));
    assert_eq!(c.spool_process_time, 120);
    assert_eq!(c.record_window_length, 15);
    assert_eq!(c.byte_window_length, 20);
    assert_eq!(c.record_burst_limit, Some(1000));
    assert_eq!(c.byte_burst_limit, None);
    assert!(c.rate_limit_enabled);
    assert!(c.daemon_recycling_enabled);
    assert!(!c.record_retention_enabled);
    assert!(c.record_server_delivery_enabled);
    assert_eq!(c.opt_in_file, Path::new("/etc/telemetrics/opt-in"));
    assert_eq!(
        c.machine_id_file,
        Path::new("/var/lib/telemetry/machine_id")
    );
    assert_eq!(c.journal_file, Path::new("/var/log/telemetry/journal"));
    assert_eq!(c.effective_post_format(), PostFormat::Json);
    assert!(c.sources.values().all(|s| *s == Source::Default));
    assert_eq!(c.sources.len(), key_names().count());
}

#[test]
fn root_prefix_moves_every_default_path() {
    let c = Config::defaults(Path::new("/tmp/x"));
    for p in [
        &c.socket_path,
        &c.spool_dir,
        &c.opt_in_file,
        &c.static_machine_id_file,
        &c.no_privacy_filters_file,
        &c.machine_id_file,
        &c.journal_file,
        &c.retention_dir,
        &c.state_dir,
        &c.cache_dir,
    ] {
        assert!(p.starts_with("/tmp/x/"), "{}", p.display());
    }
}

#[test]
fn example_conf_like_the_original_test() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/example.conf");
    let c = Config::load_from(&root(), Some(&f)).unwrap();
    assert_eq!(c.server, "http://127.0.0.1");
    assert_eq!(c.socket_path, Path::new("/tmp/test_telem_socket"));
    assert_eq!(c.spool_dir, Path::new("/tmp/spool"));
    assert_eq!(c.record_expiry, 1200);
    assert_eq!(c.spool_max_size, Some(1024));
    assert_eq!(c.spool_process_time, 180);
    assert_eq!(c.record_burst_limit, Some(100));
    assert_eq!(c.record_window_length, 15);
    assert_eq!(c.byte_burst_limit, Some(1000));
    assert_eq!(c.byte_window_length, 20);
    assert!(c.rate_limit_enabled);
    assert_eq!(c.rate_limit_strategy, RateLimitStrategy::Spool);
    assert_eq!(c.cainfo.as_deref(), Some(Path::new("/tmp/cacert.crt")));
    assert_eq!(
        c.tidheader,
        "X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f"
    );
    assert!(c.daemon_recycling_enabled);
    assert_eq!(c.explicit_file.as_deref(), Some(f.as_path()));
    assert_eq!(c.sources["server"], Source::File(f.clone(), 3));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_key_can_be_set_and_read_back() {
    let values: &[(&str, &str)] = &[
        ("server", "http://localhost:1/v2/collector"),
        ("socket_path", "/a/sock"),
        ("spool_dir", "/a/spool"),
        ("rate_limit_strategy", "drop"),
        ("cainfo", "/a/ca.pem"),
        ("tidheader", "X-Telemetry-TID: abc"),
        ("record_expiry", "5"),
        ("spool_max_size", "-1"),
        ("spool_process_time", "200"),
        ("record_window_length", "0"),
        ("byte_window_length", "59"),
        ("record_burst_limit", "-1"),
        ("byte_burst_limit", "64000"),
        ("rate_limit_enabled", "false"),
        ("daemon_recycling_enabled", "false"),
        ("record_retention_enabled", "true"),
        ("record_server_delivery_enabled", "false"),
        ("post_format", "json"),
        ("send_timeout_ms", "250"),
        ("opt_in_file", "/a/opt-in"),
        ("static_machine_id_file", "/a/static"),
        ("no_privacy_filters_file", "/a/npf"),
        ("machine_id_file", "/a/mid"),
        ("journal_file", "/a/journal"),
        ("retention_dir", "/a/records"),
        ("state_dir", "/a/state"),
        ("cache_dir", "/a/cache"),
        ("ras_storm_window", "600"),
        ("ras_uncorrected_limit", "3"),
    ];
    assert_eq!(values.len(), key_names().count(), "a key is missing here");
    let mut text = String::from("[settings]\n");
    for (k, v) in values {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let c = parse(&text).unwrap();
    for (i, (k, v)) in values.iter().enumerate() {
        assert_eq!(c.value_of(k).as_deref(), Some(*v), "key {k}");
        assert_eq!(c.sources[k], Source::File("/t.conf".into(), i + 2));
    }
    assert_eq!(c.spool_max_size, None);
    assert_eq!(c.byte_burst_limit, Some(64000));
    assert_eq!(c.effective_post_format(), PostFormat::Json);
}

#[test]
fn dialect_comments_whitespace_sections_and_duplicates() {
    let c = parse(
        "# comment\n; other comment\n\n  [settings]  \n\tserver =  http://a  \nserver=http://b\n[other]\nserver=http://c\n[settings]\nspool_dir=/s\n",
    )
    .unwrap();
    assert_eq!(c.server, "http://b");
    assert_eq!(c.spool_dir, Path::new("/s"));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("[other]"));
}

#[test]
fn unescape_rules() {
    assert_eq!(unescape(r"X-Telemetry-TID:\sabc"), "X-Telemetry-TID: abc");
    assert_eq!(unescape(r"a\\b"), r"a\b");
    assert_eq!(unescape(r"a\qb"), "aqb");
    assert_eq!(unescape(r"end\"), "end");
    assert_eq!(unescape(r"\s\s"), "  ");
}

#[test]
fn bad_lines_name_file_and_line() {
    for (text, line, needle) in [
        ("[settings\nserver=x\n", 1, "does not end with ']'"),
        ("[settings]\njust words\n", 2, "is not 'key = value'"),
        ("[settings]\n = value\n", 2, "empty key"),
        ("server=x\n", 1, "before any [section]"),
        (
            "[settings]\n\nrate_limit_enabled=maybe\n",
            3,
            "not a boolean",
        ),
        (
            "[settings]\nrecord_expiry=99999999999999999999\n",
            2,
            "out of range",
        ),
        ("[settings]\nrecord_window_length=60\n", 2, "0 to 59"),
        ("[settings]\nbyte_window_length=-1 # off\n", 2, "0 to 59"),
        ("[settings]\nspool_dir=\n", 2, "empty path"),
        ("[settings]\npost_format=xml\n", 2, "'headers'"),
        (
            "[settings]\ndaemon_recycling_enabled=\n",
            2,
            "not a boolean",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(line), "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("/t.conf:{line}: ")),
            "{e}"
        );
    }
}

/// Values the original client accepted, each with the value it gives here (what the original
/// used, or the default where that would do harm) and the warning that says so. Nothing in this
/// table is an error: a file the original ran with starts every program.
#[test]
fn values_the_original_accepted_start_with_a_warning() {
    // (key, value in the file, value used, words the warning must hold; None = no warning)
    let table: &[(&str, &str, &str, Option<&str>)] = &[
        // strtoll: trailing text ignored.
        ("record_expiry", "1200 # minutes", "1200", Some("read as 1200 (text after the number ignored)")),
        ("record_expiry", "60m", "60", Some("read as 60")),
        ("record_expiry", "+30", "30", None),
        // strtoll: no digits is 0; an expiry of 0 or less would delete every record: default.
        ("record_expiry", "soon", "1200", Some("\"soon\" is not a number; using the default 1200")),
        ("record_expiry", "", "1200", Some("not a number; using the default 1200")),
        ("record_expiry", "0", "1200", Some("read as 0, an expiry that would delete every record at once; using the default 1200")),
        ("record_expiry", "-5", "1200", Some("read as -5")),
        ("spool_max_size", "2048 KiB", "2048", Some("read as 2048")),
        ("spool_max_size", "-1", "-1", None),
        ("spool_max_size", "-7 # none", "-1", Some("read as -7")),
        ("spool_max_size", "0", "0", None),
        // 0 would refuse every record; a value that is not a number was never meant as 0.
        ("spool_max_size", "big", "5120", Some("not a number; using the default 5120")),
        ("spool_process_time", "200s", "200", Some("read as 200")),
        ("spool_process_time", "never", "120", Some("read as 0, as the original did; 0 is outside 120..300 seconds; using 120")),
        ("spool_process_time", "5", "120", Some("using 120")),
        ("spool_process_time", "900", "300", Some("using 300")),
        ("record_window_length", "15 min", "15", Some("read as 15")),
        ("byte_window_length", "x", "0", Some("read as 0, as the original did")),
        ("record_burst_limit", "100/window", "100", Some("read as 100")),
        ("record_burst_limit", "lots", "1000", Some("using the default 1000")),
        ("byte_burst_limit", "-1", "-1", None),
        ("byte_burst_limit", "many", "-1", Some("using the default -1 (no limit)")),
        ("send_timeout_ms", "250ms", "250", Some("read as 250")),
        ("send_timeout_ms", "-3", "5000", Some("using the default 5000")),
        // Anything but drop meant spool.
        ("rate_limit_strategy", "DROP", "drop", None),
        ("rate_limit_strategy", "later", "spool", Some("using 'spool', as the original did")),
        ("rate_limit_strategy", "", "spool", Some("using 'spool'")),
        // A relative path is used as given.
        ("spool_dir", "spool", "spool", Some("relative path; used as given")),
        ("socket_path", "run/telem-0", "run/telem-0", Some("relative path")),
        ("cainfo", "ca.pem", "ca.pem", Some("relative path")),
        ("journal_file", "j", "j", Some("relative path")),
        ("spool_dir", "/var/spool/telemetry", "/var/spool/telemetry", None),
    ];
    for (key, value, want, warning) in table {
        let text = format!("[settings]\n# a comment\n{key} = {value}\n");
        let c = parse(&text).unwrap_or_else(|e| panic!("{key}={value:?}: {e}"));
        assert_eq!(c.value_of(key).as_deref(), Some(*want), "{key}={value:?}");
        assert_eq!(c.sources[key], Source::File("/t.conf".into(), 3));
        match warning {
            None => assert!(c.warnings.is_empty(), "{key}={value:?}: {:?}", c.warnings),
            Some(w) => {
                assert_eq!(c.warnings.len(), 1, "{key}={value:?}: {:?}", c.warnings);
                let prefix = format!("/t.conf:3: {key}: ");
                assert!(c.warnings[0].starts_with(&prefix), "{:?}", c.warnings);
                assert!(
                    c.warnings[0].contains(w),
                    "{key}={value:?}: {:?}",
                    c.warnings
                );
            }
        }
    }
}

/// A value neither the original nor we can use is an error for that key alone: the file's other
/// keys apply, the key keeps its previous value, and the list says where.
#[test]
fn an_error_is_for_that_key_only() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "/c.conf",
        "[settings]\nsocket_path=/custom/sock\nrate_limit_enabled=maybe\nno equals sign\nrecord_expiry=90 # min\nserver=not a url\nspool_dir=/custom/spool\n",
    );
    let (c, diags) = Config::load_from_with_diagnostics(d.path(), Some(&f));
    assert_eq!(c.socket_path, Path::new("/custom/sock"));
    assert_eq!(c.spool_dir, Path::new("/custom/spool"));
    assert_eq!(c.record_expiry, 90);
    assert!(c.rate_limit_enabled, "keeps the default");
    assert_eq!(c.server, DEFAULT_SERVER, "keeps the default");
    assert_eq!(c.sources["server"], Source::Default);
    assert_eq!(c.explicit_file.as_deref(), Some(f.as_path()));
    let summary: Vec<(Severity, Option<usize>, Option<&str>)> =
        diags.iter().map(|d| (d.severity, d.line, d.key)).collect();
    assert_eq!(
        summary,
        [
            (Severity::Error, Some(3), Some("rate_limit_enabled")),
            (Severity::Error, Some(4), None),
            (Severity::Warning, Some(5), Some("record_expiry")),
            (Severity::Error, Some(6), Some("server")),
        ]
    );
    assert!(diags[0]
        .to_string()
        .starts_with(&format!("{}:3: rate_limit_enabled: ", f.display())));
    // The strict load stops at the first error, as daemons and tools do.
    let e = Config::load_from(d.path(), Some(&f)).unwrap_err();
    assert_eq!((e.line, e.key), (Some(3), Some("rate_limit_enabled")));
}

#[test]
fn an_error_in_the_admin_file_keeps_the_vendor_value() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        VENDOR_CONFIG,
        "[settings]\nserver=http://vendor/v2/collector\n",
    );
    write(
        d.path(),
        ADMIN_CONFIG,
        "[settings]\nserver=vendor\nsocket_path=/admin/sock\n",
    );
    let (c, diags) = Config::load_from_with_diagnostics(d.path(), None);
    assert_eq!(c.server, "http://vendor/v2/collector");
    assert_eq!(c.socket_path, Path::new("/admin/sock"));
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].key, Some("server"));
}

#[test]
fn a_line_that_is_not_utf8_is_an_error_for_that_line() {
    let mut c = Config::defaults(&root());
    let diags = c.apply_bytes_lenient(b"[settings]\nserver=\xff\nspool_dir=/s\n", Path::new("/t"));
    assert_eq!(diags.len(), 1);
    assert_eq!(
        (diags[0].severity, diags[0].line),
        (Severity::Error, Some(2))
    );
    assert_eq!(c.spool_dir, Path::new("/s"));
}

#[test]
fn a_bad_file_changes_nothing() {
    let mut c = Config::defaults(&root());
    let before = c.clone();
    let e = c
        .apply_bytes(
            b"[settings]\nserver=http://changed\nrate_limit_enabled=x\n",
            Path::new("/t"),
        )
        .unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(c, before);
}

#[test]
fn bools_accept_the_original_spellings() {
    for (v, want) in [("TRUE", true), ("False", false), ("1", true), ("0", false)] {
        let c = parse(&format!("[settings]\nrate_limit_enabled={v}\n")).unwrap();
        assert_eq!(c.rate_limit_enabled, want, "{v}");
    }
}

#[test]
fn unknown_keys_warn_and_clamps_warn() {
    let c = parse("[settings]\nfrobnicate=1\nspool_process_time=5\n").unwrap();
    assert_eq!(c.spool_process_time, 120);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("/t.conf:2: unknown key \"frobnicate\""));
    assert!(c.warnings[1].contains("using 120"));
    assert_eq!(
        parse("[settings]\nspool_process_time=900\n")
            .unwrap()
            .spool_process_time,
        300
    );
}

#[test]
fn not_utf8_is_an_error_with_a_line() {
    let mut c = Config::defaults(&root());
    let e = c
        .apply_bytes(b"[settings]\nserver=\xff\n", Path::new("/t"))
        .unwrap_err();
    assert_eq!(e.line, Some(2));
}

#[test]
fn layering_is_per_key() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        VENDOR_CONFIG,
        "[settings]\nserver=http://vendor\nspool_dir=/vendor/spool\n",
    );
    let admin = write(d.path(), ADMIN_CONFIG, "[settings]\nserver=http://admin\n");
    let c = Config::load_from(d.path(), None).unwrap();
    assert_eq!(c.server, "http://admin");
    assert_eq!(c.spool_dir, Path::new("/vendor/spool"));
    assert_eq!(c.record_expiry, 1200);
    assert_eq!(c.sources["server"], Source::File(admin, 2));
    assert_eq!(c.explicit_file, None);

    // An explicit file sits on the defaults alone: the vendor's spool_dir is not used.
    let own = write(d.path(), "/own.conf", "[settings]\nserver=http://own\n");
    let c = Config::load_from(d.path(), Some(&own)).unwrap();
    assert_eq!(c.server, "http://own");
    assert_eq!(c.spool_dir, under(d.path(), "/var/spool/telemetry"));

    // Only one layer present.
    fs::remove_file(under(d.path(), ADMIN_CONFIG)).unwrap();
    let c = Config::load_from(d.path(), None).unwrap();
    assert_eq!(c.server, "http://vendor");
}

#[test]
fn missing_explicit_file_is_reported_as_missing() {
    let e = Config::load_from(&root(), Some(Path::new("/does/not/exist.conf"))).unwrap_err();
    assert_eq!(e.line, None);
    assert_eq!(e.to_string(), "/does/not/exist.conf: does not exist");
    let (c, diags) =
        Config::load_from_with_diagnostics(&root(), Some(Path::new("/does/not/exist.conf")));
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].severity, Severity::Error);
    assert_eq!(c.socket_path, Path::new("/r/run/telem-0"));
}

#[test]
fn post_format_auto_follows_the_url() {
    let mut c = Config::defaults(&root());
    for (url, want) in [
        ("http://h/v3/collector", PostFormat::Json),
        ("http://h/v3/collector/", PostFormat::Json),
        ("http://h/v3/collector?x=1", PostFormat::Json),
        ("http://h/v2/collector", PostFormat::Headers),
        ("http://h/", PostFormat::Headers),
    ] {
        c.server = url.into();
        assert_eq!(c.effective_post_format(), want, "{url}");
    }
    c.post_format = PostFormat::Headers;
    c.server = "http://h/v3/collector".into();
    assert_eq!(c.effective_post_format(), PostFormat::Headers);
}

#[test]
fn header_and_url_values_are_checked_at_load() {
    for (text, key) in [
        // A space in the header name: every POST would carry a header the collector never
        // matches, and every record would be refused.
        ("[settings]\ntidheader=X Telemetry-TID: abc\n", "tidheader"),
        ("[settings]\ntidheader=: abc\n", "tidheader"),
        ("[settings]\ntidheader=X-Telemetry-TID:\n", "tidheader"),
        (
            "[settings]\ntidheader=X-Telemetry-TID: a\u{7f}b\n",
            "tidheader",
        ),
        ("[settings]\ntidheader=X-Telemetry-TID: ä\n", "tidheader"),
        ("[settings]\ntidheader=X-Telemetry-TID abc\n", "tidheader"),
        (
            "[settings]\nserver=clr.telemetry.intel.com/v2/collector\n",
            "server",
        ),
        ("[settings]\nserver=http:///v2/collector\n", "server"),
        ("[settings]\nserver=http://a b/v2/collector\n", "server"),
        ("[settings]\nserver=\n", "server"),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(2), "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("/t.conf:2: {key}: ")),
            "{text:?}: {e}"
        );
    }
    for ok in [
        "[settings]\ntidheader=X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f\n",
        "[settings]\ntidheader=X-Telemetry-TID:\\sabc\n",
        "[settings]\ntidheader=\n",
        "[settings]\nserver=https://clr.telemetry.intel.com/v3/collector\n",
        "[settings]\nserver=http://127.0.0.1:8080/v2/collector\n",
        "[settings]\nserver=HTTP://[::1]:80/\n",
    ] {
        parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

#[test]
fn error_messages_quote_a_bounded_escaped_excerpt() {
    let long = "y".repeat(5000);
    for text in [
        format!("[settings]\n{long}\u{1b}[31m\n"),
        format!("[settings]\npost_format={long}\u{1b}\n"),
        format!("[settings]\nserver=ftp://{long}\n"),
        format!("[settings]\ntidheader={long}\n"),
        format!("[{long}\n"),
        format!("[settings]\nrate_limit_enabled={long}\n"),
    ] {
        let m = parse(&text).unwrap_err().to_string();
        assert!(m.chars().count() <= 200, "{} chars: {m}", m.chars().count());
        assert!(!m.chars().any(char::is_control), "{m:?}");
    }
    let m = parse("[settings]\nrate_limit_enabled=\u{1b}[2J\n")
        .unwrap_err()
        .to_string();
    assert!(m.contains(r"\u{1b}[2J"), "{m}");
}
