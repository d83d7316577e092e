//! Tests of [`Store`] on real temporary directories: every command's success and
//! refusals, persistence across `open`, hostile names, crash recovery (the partial
//! states a crash can leave are built by hand, then `open` must finish the job), group
//! commit and the write-ahead log (a power cut is simulated by cutting thread files
//! back to what an fsync would have kept).

use std::fs;
use std::io::Write;
use std::path::Path;

use tempfile::{tempdir, TempDir};

use super::journal::{encode, Intent, JOURNAL_FILE};
use super::*;

/// A fixed temporary-file suffix for hand-made crash states.
const TEMP: &str = ".forum-upload-00000000c0ffee00";

fn open(dir: &Path) -> Store {
    Store::open(dir).unwrap()
}

/// A fresh directory and a store on it.
fn fresh() -> (TempDir, Store) {
    let dir = tempdir().unwrap();
    let store = open(dir.path());
    (dir, store)
}

/// The refusal in `result`; panics on success or another error.
fn refusal<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Refusal {
    match result {
        Err(StoreError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The names in `dir`, sorted, without the write-ahead log (its own tests look at it).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = all_names_in(dir)
        .into_iter()
        .filter(|name| !is_log_name(name))
        .collect();
    names.sort();
    names
}

/// The names in `dir`, sorted, the log's too.
fn all_names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// Uploads `bytes` as `file` of `title` the way the transfer code will.
fn upload(
    store: &mut Store,
    title: &str,
    file: &str,
    user: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    store.check_upload(title, file)?;
    let (mut temp_file, temp) = store.upload_temp()?;
    temp_file.write_all(bytes).unwrap();
    drop(temp_file);
    store.commit_upload(title, file, user, &temp)
}

/// A store with thread `t` by yoda: two messages and an upload between them.
fn with_thread() -> (TempDir, Store) {
    let (dir, mut store) = fresh();
    store.create_thread("t", "yoda").unwrap();
    store.post("t", "yoda", "first").unwrap();
    upload(&mut store, "t", "a.txt", "obiwan", b"data").unwrap();
    store.post("t", "obiwan", "second").unwrap();
    store.sync().unwrap();
    (dir, store)
}

const THREAD_T: &str = "yoda\n1 yoda: first\nobiwan uploaded a.txt\n2 obiwan: second\n";

// ----- start-up and credentials -----

#[test]
fn an_empty_directory_gets_an_empty_credentials_file_and_nothing_else() {
    let (dir, store) = fresh();
    assert_eq!(names_in(dir.path()), ["credentials.txt"]);
    assert_eq!(read_text(&dir.path().join(CREDENTIALS_FILE)), "");
    assert!(store.list().is_empty());
    assert!(store.warnings().is_empty());
    assert_eq!(store.dir(), dir.path());
}

#[test]
fn a_missing_directory_is_created() {
    let dir = tempdir().unwrap();
    let data = dir.path().join("forum");
    let store = open(&data);
    assert_eq!(names_in(&data), ["credentials.txt"]);
    assert_eq!(store.dir(), data);
}

#[test]
fn new_users_are_appended_and_fsynced_before_returning() {
    let (dir, mut store) = fresh();
    let before = store.stats().fsyncs;
    store.add_user("yoda", "wise@!man").unwrap();
    store.add_user("r2d2", "do*!@#dedo").unwrap();
    assert_eq!(store.stats().fsyncs, before + 2);
    assert_eq!(
        read_text(&dir.path().join(CREDENTIALS_FILE)),
        "yoda wise@!man\nr2d2 do*!@#dedo\n"
    );
    assert_eq!(store.password("yoda"), Some("wise@!man"));
    assert_eq!(store.password("Yoda"), None, "usernames are case-sensitive");
    assert_eq!(
        refusal(store.add_user("yoda", "other")),
        Refusal::UserExists
    );
    for (user, password) in [
        ("", "p"),
        ("a b", "p"),
        ("u", ""),
        ("u", "p q"),
        ("u\u{7}", "p"),
    ] {
        assert_eq!(
            refusal(store.add_user(user, password)),
            Refusal::BadUser,
            "{user:?} {password:?}"
        );
    }
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.password("r2d2"), Some("do*!@#dedo"));
}

#[test]
fn credentials_with_crlf_and_no_final_newline_load_and_get_a_newline_first() {
    let dir = tempdir().unwrap();
    let path = dir.path().join(CREDENTIALS_FILE);
    fs::write(&path, "yoda wise@!man\r\n\r\nr2d2 do*!@#dedo").unwrap();
    let mut store = open(dir.path());
    assert_eq!(store.password("yoda"), Some("wise@!man"));
    assert_eq!(store.password("r2d2"), Some("do*!@#dedo"));
    store.add_user("hans", "falcon*solo").unwrap();
    assert_eq!(
        read_text(&path),
        "yoda wise@!man\r\n\r\nr2d2 do*!@#dedo\nhans falcon*solo\n"
    );
    drop(store);
    assert_eq!(open(dir.path()).password("hans"), Some("falcon*solo"));
}

#[test]
fn unusable_credentials_stop_the_store_with_the_line() {
    let dir = tempdir().unwrap();
    fs::write(dir.path().join(CREDENTIALS_FILE), "yoda wise\nobiwan\n").unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Corrupt { path, line, reason }) => {
            assert_eq!(path, dir.path().join(CREDENTIALS_FILE));
            assert_eq!(line, 2);
            assert!(reason.contains("no space"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

// ----- threads and messages -----

#[test]
fn create_thread_writes_the_creator_line() {
    let (dir, mut store) = fresh();
    store.create_thread("3331", "yoda").unwrap();
    assert_eq!(read_text(&dir.path().join("3331")), "yoda\n");
    assert_eq!(store.list(), ["3331"]);
    assert_eq!(store.read("3331").unwrap(), Vec::<String>::new());
    assert_eq!(store.thread("3331").unwrap().creator, "yoda");
    assert_eq!(
        refusal(store.create_thread("3331", "obiwan")),
        Refusal::ThreadExists
    );
    assert_eq!(refusal(store.create_thread("u", "a b")), Refusal::BadUser);
    assert_eq!(read_text(&dir.path().join("3331")), "yoda\n");
}

#[test]
fn create_thread_never_takes_the_name_of_another_kind_of_file() {
    let (dir, mut store) = with_thread();
    fs::write(dir.path().join("notes"), "my own notes\n").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    // The upload `t-a.txt`, an unrelated file, a directory.
    for name in ["t-a.txt", "notes", "sub"] {
        assert_eq!(
            refusal(store.create_thread(name, "yoda")),
            Refusal::NameTaken,
            "{name}"
        );
    }
    assert_eq!(read_text(&dir.path().join("t-a.txt")), "data");
    assert_eq!(read_text(&dir.path().join("notes")), "my own notes\n");
    // Listed as an upload of `t` even after its file was deleted by hand: a thread of
    // that name would be taken for the upload on the next start.
    fs::remove_file(dir.path().join("t-a.txt")).unwrap();
    assert_eq!(
        refusal(store.create_thread("t-a.txt", "yoda")),
        Refusal::NameTaken
    );
    assert_eq!(store.list(), ["t"]);
}

#[test]
fn posts_are_numbered_among_messages_only() {
    let (dir, store) = with_thread();
    assert_eq!(read_text(&dir.path().join("t")), THREAD_T);
    assert_eq!(
        store.read("t").unwrap(),
        ["1 yoda: first", "obiwan uploaded a.txt", "2 obiwan: second"]
    );
    let thread = store.thread("t").unwrap();
    assert_eq!(thread.message_count(), 2);
    assert_eq!(thread.message(2), Some(("obiwan", "second")));
    assert_eq!(thread.message(3), None);
    assert_eq!(thread.message(0), None);
    assert_eq!(thread.uploads().collect::<Vec<_>>(), ["a.txt"]);
}

#[test]
fn post_refusals() {
    let (dir, mut store) = with_thread();
    assert_eq!(refusal(store.post("nope", "yoda", "hi")), Refusal::NoThread);
    assert!(matches!(
        refusal(store.post("../t", "yoda", "hi")),
        Refusal::BadName { .. }
    ));
    let long = "x".repeat(MAX_TEXT + 1);
    for text in ["", "two\nlines", "tab\there", "cr\r", long.as_str()] {
        assert_eq!(
            refusal(store.post("t", "yoda", text)),
            Refusal::BadText,
            "{text:?}"
        );
    }
    assert_eq!(refusal(store.post("t", "a b", "hi")), Refusal::BadUser);
    assert_eq!(read_text(&dir.path().join("t")), THREAD_T);
    assert_eq!(store.post("t", "yoda", &"x".repeat(MAX_TEXT)).unwrap(), 3);
}

#[test]
fn delete_renumbers_the_later_messages() {
    let (dir, mut store) = with_thread();
    store.post("t", "yoda", "third").unwrap();
    store.delete("t", 1, "yoda").unwrap();
    let expected = "yoda\nobiwan uploaded a.txt\n1 obiwan: second\n2 yoda: third\n";
    assert_eq!(read_text(&dir.path().join("t")), expected);
    assert_eq!(
        store.read("t").unwrap(),
        ["obiwan uploaded a.txt", "1 obiwan: second", "2 yoda: third"]
    );
    // Numbering goes on from the new count.
    assert_eq!(store.post("t", "yoda", "fourth").unwrap(), 3);
    store.delete("t", 3, "yoda").unwrap();
    store.sync().unwrap();
    assert_eq!(read_text(&dir.path().join("t")), expected);
    // The rewrite left no temporary file behind.
    assert_eq!(names_in(dir.path()), ["credentials.txt", "t", "t-a.txt"]);
}

#[test]
fn delete_refusals_come_in_the_spec_order() {
    let (dir, mut store) = with_thread();
    // A bad name beats a missing thread, which beats a missing message, which beats
    // the author check.
    assert!(matches!(
        refusal(store.delete("a b", 9, "nobody")),
        Refusal::BadName { .. }
    ));
    assert_eq!(
        refusal(store.delete("nope", 9, "nobody")),
        Refusal::NoThread
    );
    assert_eq!(
        refusal(store.delete("t", 3, "nobody")),
        Refusal::NoMessage { number: 3 }
    );
    assert_eq!(
        refusal(store.delete("t", 0, "yoda")),
        Refusal::NoMessage { number: 0 }
    );
    assert_eq!(refusal(store.delete("t", 2, "yoda")), Refusal::NotAuthor);
    assert_eq!(read_text(&dir.path().join("t")), THREAD_T);
}

#[test]
fn edit_keeps_number_and_author() {
    let (dir, mut store) = with_thread();
    store.edit("t", 2, "obiwan", "second, edited").unwrap();
    assert_eq!(
        read_text(&dir.path().join("t")),
        "yoda\n1 yoda: first\nobiwan uploaded a.txt\n2 obiwan: second, edited\n"
    );
    assert_eq!(
        refusal(store.edit("t", 1, "obiwan", "x")),
        Refusal::NotAuthor
    );
    assert_eq!(
        refusal(store.edit("t", 5, "obiwan", "x")),
        Refusal::NoMessage { number: 5 }
    );
    assert_eq!(
        refusal(store.edit("nope", 1, "yoda", "x")),
        Refusal::NoThread
    );
    assert_eq!(
        refusal(store.edit("t", 1, "yoda", "two\nlines")),
        Refusal::BadText
    );
    assert_eq!(
        store.thread("t").unwrap().message(1),
        Some(("yoda", "first"))
    );
}

#[test]
fn appends_after_a_rewrite_go_to_the_new_file() {
    let (dir, mut store) = with_thread();
    // The post keeps its file open for the next append; the rewrite replaces that file.
    store.post("t", "yoda", "third").unwrap();
    store.edit("t", 3, "yoda", "third, edited").unwrap();
    store.post("t", "yoda", "fourth").unwrap();
    store.sync().unwrap();
    let expected = format!("{THREAD_T}3 yoda: third, edited\n4 yoda: fourth\n");
    assert_eq!(read_text(&dir.path().join("t")), expected);
    drop(store);
    assert_eq!(open(dir.path()).read("t").unwrap().len(), 5);
}

#[test]
fn list_is_in_byte_order_and_read_refuses_unknown_threads() {
    let (_dir, mut store) = fresh();
    for title in ["b", "a", "B", "_x", "10", "9"] {
        store.create_thread(title, "yoda").unwrap();
    }
    assert_eq!(store.list(), ["10", "9", "B", "_x", "a", "b"]);
    assert_eq!(refusal(store.read("c")), Refusal::NoThread);
    assert!(matches!(refusal(store.read("..")), Refusal::BadName { .. }));
}

#[test]
fn a_thread_without_a_final_newline_gets_one_before_the_next_line() {
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("t"), "yoda\n1 yoda: hand-made").unwrap();
    let mut store = open(dir.path());
    assert_eq!(store.post("t", "obiwan", "reply").unwrap(), 2);
    assert_eq!(
        read_text(&dir.path().join("t")),
        "yoda\n1 yoda: hand-made\n2 obiwan: reply\n"
    );
    fs::write(dir.path().join("u"), "yoda").unwrap();
    let mut store = open(dir.path());
    upload(&mut store, "u", "f", "yoda", b"x").unwrap();
    assert_eq!(read_text(&dir.path().join("u")), "yoda\nyoda uploaded f\n");
}

// ----- uploads, downloads and removal -----

#[test]
fn an_upload_is_stored_as_title_dash_file_and_listed() {
    let (dir, store) = with_thread();
    assert_eq!(read_text(&dir.path().join("t-a.txt")), "data");
    assert_eq!(
        store.download_path("t", "a.txt").unwrap(),
        dir.path().join("t-a.txt")
    );
    // No temporary file and no journal stay behind.
    assert_eq!(names_in(dir.path()), ["credentials.txt", "t", "t-a.txt"]);
    let stats = store.stats();
    assert_eq!((stats.threads, stats.messages, stats.uploads), (1, 2, 1));
}

#[test]
fn upload_refusals() {
    let (dir, mut store) = with_thread();
    store.create_thread("t-b", "yoda").unwrap();
    fs::write(dir.path().join("t-c"), "unrelated").unwrap();
    assert_eq!(refusal(store.check_upload("nope", "f")), Refusal::NoThread);
    assert_eq!(
        refusal(store.check_upload("t", "a.txt")),
        Refusal::FileExists
    );
    // `t-b` is a thread, `t-c` an unrelated file.
    assert_eq!(refusal(store.check_upload("t", "b")), Refusal::NameTaken);
    assert_eq!(refusal(store.check_upload("t", "c")), Refusal::NameTaken);
    // Both names are checked before the thread is looked up.
    assert!(matches!(
        refusal(store.check_upload("nope", "../x")),
        Refusal::BadName { .. }
    ));
    assert_eq!(read_text(&dir.path().join("t-c")), "unrelated");
}

#[test]
fn commit_rechecks_and_deletes_the_temp_file_when_it_lost_a_race() {
    let (dir, mut store) = with_thread();
    store.check_upload("t", "b").unwrap();
    let (mut file, temp) = store.upload_temp().unwrap();
    file.write_all(b"mine").unwrap();
    drop(file);
    // Meanwhile another program puts a file there.
    fs::write(dir.path().join("t-b"), "theirs").unwrap();
    assert_eq!(
        refusal(store.commit_upload("t", "b", "yoda", &temp)),
        Refusal::NameTaken
    );
    assert_eq!(read_text(&dir.path().join("t-b")), "theirs");
    assert!(!temp.exists());
    assert_eq!(read_text(&dir.path().join("t")), THREAD_T);

    let (_, temp) = store.upload_temp().unwrap();
    assert_eq!(
        refusal(store.commit_upload("t", "a.txt", "yoda", &temp)),
        Refusal::FileExists
    );
    assert!(!temp.exists());
    let (_, temp) = store.upload_temp().unwrap();
    assert_eq!(
        refusal(store.commit_upload("t", "z", "a b", &temp)),
        Refusal::BadUser
    );
    assert!(!temp.exists());
    assert_eq!(
        names_in(dir.path()),
        ["credentials.txt", "t", "t-a.txt", "t-b"]
    );
}

#[test]
fn commit_refuses_a_file_that_is_not_its_own_temp_and_leaves_it_alone() {
    let (dir, mut store) = with_thread();
    let precious = dir.path().join("precious");
    fs::write(&precious, "keep me").unwrap();
    let elsewhere = tempdir().unwrap();
    let outside = elsewhere.path().join(TEMP);
    fs::write(&outside, "keep me too").unwrap();
    for path in [&precious, &outside] {
        let error = store.commit_upload("t", "z", "yoda", path).unwrap_err();
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
        assert!(path.exists());
    }
    assert!(!dir.path().join("t-z").exists());
}

#[test]
fn upload_temps_are_hidden_files_in_dir() {
    let (dir, store) = fresh();
    let (_, temp) = store.upload_temp().unwrap();
    assert_eq!(temp.parent(), Some(dir.path()));
    let name = temp.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(".forum-upload-"), "{name}");
    assert!(is_temp_name(name));
}

#[test]
fn download_refusals() {
    let (dir, mut store) = with_thread();
    fs::write(dir.path().join("t-b"), "not listed").unwrap();
    assert_eq!(
        refusal(store.download_path("nope", "a.txt")),
        Refusal::NoThread
    );
    assert_eq!(refusal(store.download_path("t", "b")), Refusal::NoFile);
    assert!(matches!(
        refusal(store.download_path("t", "/etc/passwd")),
        Refusal::BadName { .. }
    ));
    // Listed, but deleted from DIR by hand.
    upload(&mut store, "t", "gone", "yoda", b"x").unwrap();
    fs::remove_file(dir.path().join("t-gone")).unwrap();
    assert_eq!(refusal(store.download_path("t", "gone")), Refusal::NoFile);
}

#[test]
fn remove_deletes_the_thread_and_only_its_listed_uploads() {
    let (dir, mut store) = with_thread();
    upload(&mut store, "t", "b.png", "yoda", b"png").unwrap();
    fs::write(dir.path().join("t-unlisted"), "not an upload").unwrap();
    assert_eq!(refusal(store.remove("t", "obiwan")), Refusal::NotCreator);
    assert_eq!(refusal(store.remove("nope", "yoda")), Refusal::NoThread);
    assert!(matches!(
        refusal(store.remove("-t", "yoda")),
        Refusal::BadName { .. }
    ));
    let removed = store.remove("t", "yoda").unwrap();
    store.sync().unwrap();
    assert_eq!(removed, ["t", "t-a.txt", "t-b.png"]);
    assert_eq!(names_in(dir.path()), ["credentials.txt", "t-unlisted"]);
    assert!(store.list().is_empty());
    assert_eq!(refusal(store.read("t")), Refusal::NoThread);
    // The title is free again.
    store.create_thread("t", "obiwan").unwrap();
}

// ----- names -----

#[test]
fn hostile_names_are_refused_everywhere_and_nothing_leaves_dir() {
    let outer = tempdir().unwrap();
    let dir = outer.path().join("forum");
    let mut store = open(&dir);
    store.create_thread("t", "yoda").unwrap();
    let kilobyte = "n".repeat(1024);
    let hostile = [
        "../x",
        "/etc/passwd",
        "credentials.txt",
        "a b",
        kilobyte.as_str(),
        "\u{7}",
        ".hidden",
        "-x",
        "..",
        "",
        ".forum-journal",
    ];
    for name in hostile {
        let bad = |error: Refusal| matches!(error, Refusal::BadName { .. });
        assert!(bad(refusal(store.create_thread(name, "yoda"))), "{name:?}");
        assert!(bad(refusal(store.post(name, "yoda", "x"))), "{name:?}");
        assert!(bad(refusal(store.read(name))), "{name:?}");
        assert!(bad(refusal(store.delete(name, 1, "yoda"))), "{name:?}");
        assert!(bad(refusal(store.edit(name, 1, "yoda", "x"))), "{name:?}");
        assert!(bad(refusal(store.remove(name, "yoda"))), "{name:?}");
        assert!(bad(refusal(store.check_upload(name, "f"))), "{name:?}");
        assert!(bad(refusal(store.check_upload("t", name))), "{name:?}");
        assert!(bad(refusal(store.download_path("t", name))), "{name:?}");
        let (_, temp) = store.upload_temp().unwrap();
        assert!(
            bad(refusal(store.commit_upload("t", name, "yoda", &temp))),
            "{name:?}"
        );
    }
    store.sync().unwrap();
    assert_eq!(names_in(outer.path()), ["forum"]);
    assert_eq!(names_in(&dir), ["credentials.txt", "t"]);
    assert_eq!(read_text(&dir.join(CREDENTIALS_FILE)), "");
}

#[test]
fn refusals_read_as_sentences() {
    let refusal = Refusal::BadName {
        name: "../x".into(),
        problem: NameProblem::BadChar { ch: '/' },
    };
    assert_eq!(
        refusal.to_string(),
        "`../x` contains `/`: names may only hold letters, digits, `.`, `_` and `-`"
    );
    let empty = Refusal::BadName {
        name: String::new(),
        problem: NameProblem::Empty,
    };
    assert_eq!(
        empty.to_string(),
        "the name is empty: a name needs 1 to 64 characters"
    );
    let error = StoreError::from(Refusal::NoMessage { number: 7 });
    assert_eq!(error.to_string(), "message 7 does not exist in the thread");
    assert_eq!(error.refusal(), Some(&Refusal::NoMessage { number: 7 }));
}

// ----- persistence and loading -----

#[test]
fn everything_survives_a_restart() {
    let (dir, mut store) = with_thread();
    store.add_user("yoda", "wise@!man").unwrap();
    store.create_thread("u", "obiwan").unwrap();
    store.post("u", "obiwan", "hello there").unwrap();
    store.post("u", "yoda", "to delete").unwrap();
    store.post("u", "yoda", "general kenobi").unwrap();
    store.delete("u", 2, "yoda").unwrap();
    store.edit("t", 1, "yoda", "first, edited").unwrap();
    store.create_thread("gone", "yoda").unwrap();
    store.remove("gone", "yoda").unwrap();
    store.sync().unwrap();
    let list = store.list();
    let reads: Vec<_> = list.iter().map(|t| store.read(t).unwrap()).collect();
    drop(store);

    let store = open(dir.path());
    assert!(store.warnings().is_empty(), "{:?}", store.warnings());
    assert_eq!(store.list(), list);
    assert_eq!(list, ["t", "u"]);
    let again: Vec<_> = list.iter().map(|t| store.read(t).unwrap()).collect();
    assert_eq!(again, reads);
    assert_eq!(
        reads[1],
        ["1 obiwan: hello there", "2 yoda: general kenobi"]
    );
    assert_eq!(store.password("yoda"), Some("wise@!man"));
    assert_eq!(
        store.download_path("t", "a.txt").unwrap(),
        dir.path().join("t-a.txt")
    );
}

#[test]
fn unrelated_files_load_as_no_threads_and_stay_untouched() {
    let dir = tempdir().unwrap();
    let cargo = "[package]\nname = \"socklab\"\nversion = \"0.1.0\"\n";
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let files: [(&str, &[u8]); 6] = [
        ("Cargo.toml", cargo.as_bytes()),
        ("README.md", b"# socklab\n\nA toolkit.\n"),
        ("a.out", &binary),
        ("empty", b""),
        (".gitignore", b"target\n"),
        ("spaces in name", b"yoda\n"),
    ];
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    fs::create_dir(dir.path().join("src")).unwrap();
    fs::write(dir.path().join("src").join("t"), "yoda\n").unwrap();
    let store = open(dir.path());
    assert!(store.list().is_empty(), "{:?}", store.list());
    // Cargo.toml's first line looks like a username, so it earns a note.
    assert_eq!(store.warnings().len(), 1, "{:?}", store.warnings());
    assert!(store.warnings()[0].contains("Cargo.toml"));
    assert!(store.warnings()[0].contains("line 2"));
    for (name, bytes) in files {
        assert_eq!(fs::read(dir.path().join(name)).unwrap(), bytes, "{name}");
    }
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_is_never_loaded_as_a_thread() {
    let dir = tempdir().unwrap();
    let elsewhere = tempdir().unwrap();
    fs::write(elsewhere.path().join("x"), "yoda\n").unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("x"), dir.path().join("t")).unwrap();
    let mut store = open(dir.path());
    assert!(store.list().is_empty());
    assert_eq!(
        refusal(store.create_thread("t", "yoda")),
        Refusal::NameTaken
    );
}

#[test]
fn an_upload_that_looks_like_a_thread_stays_an_upload() {
    let dir = tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write("a", "yoda\nyoda uploaded b\n");
    // `a-b` is a's upload even though it parses as a thread listing `c`...
    write("a-b", "vader\nvader uploaded c\n");
    // ...so `a-b-c` is claimed by nothing and is a thread of its own.
    write("a-b-c", "luke\n");
    let store = open(dir.path());
    assert_eq!(store.list(), ["a", "a-b-c"]);
    assert!(store.warnings().is_empty(), "{:?}", store.warnings());
}

#[test]
fn broken_threads_are_left_alone_with_a_warning() {
    let dir = tempdir().unwrap();
    let broken = "yoda\n1 yoda: ok\n3 yoda: skipped 2\n";
    fs::write(dir.path().join("t"), broken).unwrap();
    fs::write(dir.path().join("u"), "yoda\nyoda uploaded gone\n").unwrap();
    let mut store = open(dir.path());
    assert_eq!(store.list(), ["u"]);
    let warnings = store.warnings().join("\n");
    assert!(warnings.contains("left t alone"), "{warnings}");
    assert!(warnings.contains("line 3"), "{warnings}");
    assert!(warnings.contains("u-gone is missing"), "{warnings}");
    assert_eq!(
        refusal(store.create_thread("t", "yoda")),
        Refusal::NameTaken
    );
    assert_eq!(read_text(&dir.path().join("t")), broken);
}

// ----- crash recovery -----

/// Thread `t` by yoda with one message, and a hand-written journal for an upload of
/// `f` whose temp file holds `data`.
fn interrupted_upload(temp_there: bool, linked: bool, line_there: bool) -> TempDir {
    let dir = tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let mut thread = "yoda\n1 yoda: hi\n".to_string();
    if line_there {
        thread.push_str("obiwan uploaded f\n");
    }
    fs::write(path("t"), thread).unwrap();
    if temp_there {
        fs::write(path(TEMP), "data").unwrap();
    }
    if linked {
        fs::write(path("t-f"), "data").unwrap();
    }
    let intent = Intent::Upload {
        title: "t".into(),
        file: "f".into(),
        user: "obiwan".into(),
        temp: TEMP.into(),
    };
    fs::write(path(JOURNAL_FILE), encode(&intent)).unwrap();
    dir
}

#[test]
fn an_interrupted_upload_is_rolled_forward_from_every_step() {
    // Crashed after the journal; after the link; after deleting the temp file; after
    // the append, before deleting the journal.
    let steps = [
        (true, false, false),
        (true, true, false),
        (false, true, false),
        (false, true, true),
    ];
    for (temp_there, linked, line_there) in steps {
        let dir = interrupted_upload(temp_there, linked, line_there);
        let store = open(dir.path());
        let case = format!("temp {temp_there}, linked {linked}, line {line_there}");
        assert_eq!(
            names_in(dir.path()),
            ["credentials.txt", "t", "t-f"],
            "{case}"
        );
        assert_eq!(
            read_text(&dir.path().join("t")),
            "yoda\n1 yoda: hi\nobiwan uploaded f\n",
            "{case}"
        );
        assert_eq!(read_text(&dir.path().join("t-f")), "data", "{case}");
        assert_eq!(store.list(), ["t"], "{case}");
        assert!(store.download_path("t", "f").is_ok(), "{case}");
        assert!(
            store
                .warnings()
                .iter()
                .any(|w| w.contains("finished the upload")),
            "{case}: {:?}",
            store.warnings()
        );
    }
}

#[test]
fn an_upload_journal_without_its_data_changes_nothing() {
    let dir = interrupted_upload(false, false, false);
    let store = open(dir.path());
    assert_eq!(names_in(dir.path()), ["credentials.txt", "t"]);
    assert_eq!(read_text(&dir.path().join("t")), "yoda\n1 yoda: hi\n");
    assert!(
        store.warnings()[0].contains("dropped"),
        "{:?}",
        store.warnings()
    );
}

/// Thread `t` by yoda listing uploads `a` and `b`, an unlisted `t-c`, and a journal for
/// removing `t`; `deleted` says how many of `t`, `t-a`, `t-b` are already gone.
fn interrupted_remove(deleted: usize) -> TempDir {
    let dir = tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let files = [
        ("t", "yoda\nyoda uploaded a\nyoda uploaded b\n"),
        ("t-a", "a"),
        ("t-b", "b"),
    ];
    for (name, text) in &files[deleted..] {
        fs::write(path(name), text).unwrap();
    }
    fs::write(path("t-c"), "not listed").unwrap();
    let intent = Intent::Remove {
        title: "t".into(),
        files: vec!["a".into(), "b".into()],
    };
    fs::write(path(JOURNAL_FILE), encode(&intent)).unwrap();
    dir
}

#[test]
fn an_interrupted_remove_is_rolled_forward_from_every_step() {
    for deleted in 0..=3 {
        let dir = interrupted_remove(deleted);
        let store = open(dir.path());
        assert_eq!(
            names_in(dir.path()),
            ["credentials.txt", "t-c"],
            "{deleted} deleted"
        );
        assert!(store.list().is_empty());
    }
}

#[test]
fn a_doctored_journal_stops_the_store_and_deletes_nothing() {
    let dir = tempdir().unwrap();
    let outside = tempdir().unwrap();
    fs::write(outside.path().join("x"), "precious").unwrap();
    fs::write(dir.path().join("t"), "yoda\n").unwrap();
    let doctored = encode(&Intent::Remove {
        title: "t".into(),
        files: vec!["a".into()],
    })
    .replace("\na\n", "\n../x\n");
    fs::write(dir.path().join(JOURNAL_FILE), doctored).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Corrupt { line, .. }) => assert_eq!(line, 5),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(read_text(&dir.path().join("t")), "yoda\n");
    assert_eq!(read_text(&outside.path().join("x")), "precious");
}

#[test]
fn stale_temp_files_are_swept_and_other_dot_files_are_not() {
    let dir = tempdir().unwrap();
    let stale = [
        ".forum-upload-0123456789abcdef",
        ".forum-rewrite-fedcba9876543210",
    ];
    let kept = [
        ".forum-notes",
        ".forum-upload-xyz",
        ".forum-upload-0123456789ABCDEF",
        ".forum-upload-0123456789abcdef0",
        ".gitignore",
        ".hidden",
    ];
    for name in stale.iter().chain(&kept) {
        fs::write(dir.path().join(name), "x").unwrap();
    }
    let store = open(dir.path());
    let mut expected: Vec<&str> = kept.to_vec();
    expected.push("credentials.txt");
    expected.sort();
    assert_eq!(names_in(dir.path()), expected);
    assert_eq!(
        store.warnings().len(),
        stale.len(),
        "{:?}",
        store.warnings()
    );
}

// ----- group commit and size -----

#[test]
fn a_thousand_posts_cost_one_fsync_at_sync() {
    let (dir, mut store) = fresh();
    store.create_thread("t", "yoda").unwrap();
    store.sync().unwrap();
    let before = store.stats().fsyncs;
    for n in 1..=1000 {
        assert_eq!(store.post("t", "yoda", &format!("message {n}")).unwrap(), n);
    }
    assert_eq!(store.stats().fsyncs, before, "appends do not fsync");
    store.sync().unwrap();
    assert_eq!(store.stats().fsyncs, before + 1);
    store.sync().unwrap();
    assert_eq!(store.stats().fsyncs, before + 1, "nothing left to sync");
    let text = read_text(&dir.path().join("t"));
    assert!(text.ends_with("\n1000 yoda: message 1000\n"));
}

#[test]
fn a_five_thousand_message_thread_reads_back() {
    let (dir, mut store) = fresh();
    store.create_thread("big", "yoda").unwrap();
    for n in 1..=5000 {
        store.post("big", "yoda", &format!("message {n}")).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let store = open(dir.path());
    let lines = store.read("big").unwrap();
    assert_eq!(lines.len(), 5000);
    assert_eq!(lines[0], "1 yoda: message 1");
    assert_eq!(lines[4999], "5000 yoda: message 5000");
    assert_eq!(store.stats().messages, 5000);
}

#[test]
fn a_batch_of_posts_to_twenty_threads_costs_one_fsync() {
    let (dir, mut store) = fresh();
    for n in 0..20 {
        store.create_thread(&format!("t{n}"), "yoda").unwrap();
    }
    store.sync().unwrap();
    let (fsyncs, syncs) = (store.stats().fsyncs, store.stats().syncs);
    for n in 0..20 {
        store.post(&format!("t{n}"), "yoda", "hello").unwrap();
    }
    store.sync().unwrap();
    assert_eq!(store.stats().fsyncs, fsyncs + 1, "only the log is fsynced");
    assert_eq!(store.stats().syncs, syncs + 1);
    let logs: Vec<String> = all_names_in(dir.path())
        .into_iter()
        .filter(|name| is_log_name(name))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
}

/// Batches that queued behind a flush share one fdatasync of the log, and the stats
/// count the fsyncs made, not the ones asked for; the appends of every batch are then
/// durable (their log records replay after a simulated power cut).
#[test]
fn queued_batches_share_one_log_fsync() {
    let (dir, mut store) = fresh();
    store.create_thread("t", "yoda").unwrap();
    store.sync().unwrap();
    let fsyncs = store.stats().fsyncs;
    let mut group = Vec::new();
    for n in 0..3 {
        store.post("t", "yoda", &format!("batch {n}")).unwrap();
        group.push(store.take_pending_sync());
    }
    PendingSync::run_group(group).unwrap();
    assert_eq!(
        store.stats().fsyncs,
        fsyncs + 1,
        "one fsync for three batches"
    );
    let thread = dir.path().join("t");
    let before = std::fs::read_to_string(&thread).unwrap();
    // A power cut that lost the thread file's unsynced tail: the log restores it.
    std::fs::write(&thread, "yoda\n").unwrap();
    drop(store);
    Store::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&thread).unwrap(), before);
}

// ----- the write-ahead log: power cuts -----

/// The paths of the logs in `dir`.
fn logs_in(dir: &Path) -> Vec<std::path::PathBuf> {
    all_names_in(dir)
        .into_iter()
        .filter(|name| is_log_name(name))
        .map(|name| dir.join(name))
        .collect()
}

/// Cuts `dir/name` to `len` bytes, as a power cut does to appends never fsynced.
fn cut(dir: &Path, name: &str, len: usize) {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(name))
        .unwrap();
    file.set_len(len as u64).unwrap();
}

/// A store whose thread `t` got its lines in three batches (each synced, so in the log).
fn posted() -> (TempDir, Store) {
    let (dir, mut store) = fresh();
    store.create_thread("t", "yoda").unwrap();
    store.sync().unwrap();
    store.post("t", "yoda", "first").unwrap();
    store.post("t", "obiwan", "second").unwrap();
    store.sync().unwrap();
    store.post("t", "yoda", "third").unwrap();
    store.sync().unwrap();
    (dir, store)
}

const POSTED_T: &str = "yoda\n1 yoda: first\n2 obiwan: second\n3 yoda: third\n";

#[test]
fn appends_a_power_cut_lost_are_restored_from_the_log() {
    // Every length the file could be cut back to, from nothing to all but one byte.
    for len in 0..POSTED_T.len() {
        let (dir, store) = posted();
        drop(store);
        cut(dir.path(), "t", len);
        let store = open(dir.path());
        assert_eq!(read_text(&dir.path().join("t")), POSTED_T, "cut to {len}");
        assert_eq!(store.read("t").unwrap().len(), 3, "cut to {len}");
        assert!(
            store.warnings().iter().any(|w| w.starts_with("restored ")),
            "cut to {len}: {:?}",
            store.warnings()
        );
        assert!(
            logs_in(dir.path()).is_empty(),
            "the log is deleted after replay"
        );
    }
}

#[test]
fn a_thread_whose_creation_was_lost_is_recreated() {
    let (dir, store) = posted();
    drop(store);
    fs::remove_file(dir.path().join("t")).unwrap();
    let store = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T);
    assert_eq!(store.list(), ["t"]);
}

#[test]
fn a_torn_append_is_cut_back_and_written_again() {
    let (dir, store) = posted();
    drop(store);
    // The disk kept the length of the last append but zeros instead of its bytes, then
    // a garbled half of a line after the second.
    let second_end = POSTED_T.find("3 yoda").unwrap();
    let mut torn = POSTED_T.as_bytes()[..second_end].to_vec();
    torn.extend_from_slice(b"3 yo\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    fs::write(dir.path().join("t"), &torn).unwrap();
    let store = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T);
    assert_eq!(store.read("t").unwrap()[2], "3 yoda: third");
}

#[test]
fn a_torn_log_tail_is_ignored() {
    let (dir, mut store) = posted();
    store.post("t", "yoda", "fourth").unwrap();
    store.sync().unwrap();
    drop(store);
    let log = logs_in(dir.path()).pop().unwrap();
    let bytes = fs::read(&log).unwrap();
    // The cut tore the last record (the fourth post) and the file's last line.
    let record = wal::Record::append("t", POSTED_T.len() as u64, b"4 yoda: fourth\n");
    let torn_at = bytes.len() - record.encode().len() + 9;
    fs::write(&log, &bytes[..torn_at]).unwrap();
    cut(dir.path(), "t", POSTED_T.len() - 4);
    let store = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T);
    assert!(
        store
            .warnings()
            .iter()
            .any(|w| w.contains("record cut short")),
        "{:?}",
        store.warnings()
    );
}

#[test]
fn a_damaged_record_ends_the_log_and_nothing_after_it_is_applied() {
    let (dir, mut store) = posted();
    store.post("t", "yoda", "fourth").unwrap();
    store.sync().unwrap();
    drop(store);
    let log = logs_in(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&log).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    fs::write(&log, &bytes).unwrap();
    cut(dir.path(), "t", POSTED_T.len());
    let store = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T, "no fourth post");
    assert!(store
        .warnings()
        .iter()
        .any(|w| w.contains("checksum does not match")));
}

#[test]
fn a_barrier_keeps_old_appends_off_the_rewritten_file() {
    // MSG, EDT, MSG; then the cut loses the file's tail.
    let (dir, mut store) = fresh();
    store.create_thread("t", "yoda").unwrap();
    store.post("t", "yoda", "first").unwrap();
    store.post("t", "yoda", "second").unwrap();
    store.sync().unwrap();
    store.edit("t", 1, "yoda", "FIRST, edited").unwrap();
    store.post("t", "yoda", "third").unwrap();
    store.sync().unwrap();
    drop(store);
    let expected = "yoda\n1 yoda: FIRST, edited\n2 yoda: second\n3 yoda: third\n";
    assert_eq!(read_text(&dir.path().join("t")), expected);
    cut(
        dir.path(),
        "t",
        expected.len() - "3 yoda: third\n".len() + 2,
    );
    let store = open(dir.path());
    // Without the barrier, replaying `1 yoda: first` at its old offset would find
    // `1 yoda: FIRST` there and cut the edited file back.
    assert_eq!(read_text(&dir.path().join("t")), expected);
    assert_eq!(store.stats().messages, 3);
}

#[test]
fn a_barrier_keeps_a_removed_thread_removed_and_its_successor_restored() {
    let (dir, mut store) = fresh();
    store.create_thread("gone", "yoda").unwrap();
    store.post("gone", "yoda", "bye").unwrap();
    store.create_thread("t", "yoda").unwrap();
    store.post("t", "yoda", "old").unwrap();
    store.sync().unwrap();
    store.remove("gone", "yoda").unwrap();
    store.remove("t", "yoda").unwrap();
    store.create_thread("t", "luke").unwrap();
    store.post("t", "luke", "new").unwrap();
    store.sync().unwrap();
    drop(store);
    cut(dir.path(), "t", 0);
    let store = open(dir.path());
    assert_eq!(store.list(), ["t"], "{:?}", store.warnings());
    assert_eq!(read_text(&dir.path().join("t")), "luke\n1 luke: new\n");
}

#[test]
fn replay_is_idempotent() {
    let (dir, store) = posted();
    drop(store);
    let logs: Vec<(std::path::PathBuf, Vec<u8>)> = logs_in(dir.path())
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(!logs.is_empty());
    cut(dir.path(), "t", 7);
    let first = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T);
    drop(first);
    // A crash after the repair but before the logs were deleted: they come back.
    for (path, bytes) in &logs {
        fs::write(path, bytes).unwrap();
    }
    let second = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T);
    assert!(second.warnings().is_empty(), "{:?}", second.warnings());
    drop(second);
    let third = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), POSTED_T);
    assert!(logs_in(dir.path()).is_empty());
    assert_eq!(third.stats().messages, 3);
}

#[test]
fn an_upload_line_is_restored_and_its_journal_does_not_add_it_twice() {
    let (dir, store) = with_thread();
    drop(store);
    assert_eq!(read_text(&dir.path().join("t")), THREAD_T);
    cut(dir.path(), "t", "yoda\n1 yoda: first\n".len());
    let store = open(dir.path());
    assert_eq!(read_text(&dir.path().join("t")), THREAD_T);
    assert_eq!(
        store.download_path("t", "a.txt").unwrap(),
        dir.path().join("t-a.txt")
    );
}

#[test]
fn a_checkpoint_syncs_the_threads_and_deletes_the_log() {
    let (dir, mut store) = posted();
    let generation = store.log.generation;
    let before = store.stats().fsyncs;
    store.checkpoint().unwrap();
    assert!(logs_in(dir.path()).is_empty());
    assert_eq!(store.stats().fsyncs, before + 2, "the thread file and DIR");
    assert!(store.log.generation > generation);
    store.post("t", "yoda", "fourth").unwrap();
    store.sync().unwrap();
    assert_eq!(
        logs_in(dir.path()),
        [dir.path().join(wal::log_name(store.log.generation))]
    );
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.stats().messages, 4);
    assert!(store.warnings().is_empty(), "{:?}", store.warnings());
}

#[test]
fn a_full_log_is_checkpointed_in_the_background() {
    let (dir, mut store) = posted();
    let old = logs_in(dir.path());
    assert_eq!(old.len(), 1);
    // As if the log had grown to the limit.
    store.log.len = wal::CHECKPOINT_BYTES;
    store.post("t", "yoda", "fourth").unwrap();
    store.sync().unwrap();
    store.post("t", "yoda", "fifth").unwrap();
    // Waits for the new generation's checkpoint, which runs after the older one.
    store.checkpoint().unwrap();
    assert!(!old[0].exists(), "the full log was deleted");
    assert!(logs_in(dir.path()).is_empty());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.stats().messages, 5);
}
