//! `rl run --rootfs`: the command runs, as PID 1 of its namespace, as root of a user namespace
//! mapped onto the user and their subordinate ids, with the environment, working directory and
//! user the options ask for.
mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;

#[test]
fn echo_prints_and_exits_zero() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let out = ctx.run(&["--rm"], &["echo", "hello", "world"]);
    out.assert_ok();
    assert_eq!(out.stdout, "hello world\n", "{out}");
    assert_eq!(out.stderr, "", "a clean run prints nothing on stderr\n{out}");
}

#[test]
fn command_is_pid_1() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["sh", "-c", "echo $$"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "1", "{out}");
}

#[test]
fn init_is_pid_1_and_command_its_child() {
    let Some(ctx) = Ctx::new() else { return };
    let script = "echo pid=$$; echo ppid=$PPID; tr '\\0' ' ' < /proc/1/cmdline; echo";
    let out = ctx.run(&["--rm", "--init"], &["sh", "-c", script]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    assert_ne!(lines[0], "pid=1", "with --init the command must not be PID 1\n{out}");
    assert_eq!(lines[1], "ppid=1", "the command is the child of the init\n{out}");
    let init = lines[2].trim();
    assert!(!init.is_empty() && !init.starts_with("sh"), "/proc/1/cmdline should be rl's init\n{out}");
    assert!(init.contains("init") || init.contains("rl"), "/proc/1/cmdline should be rl's init\n{out}");
}

#[test]
fn root_inside_mapped_onto_user_and_subids() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let out = ctx.run(
        &["--rm"],
        &["sh", "-c", "id -u; id -g; echo uid_map; cat /proc/self/uid_map; echo gid_map; cat /proc/self/gid_map"],
    );
    out.assert_ok();
    let text = &out.stdout;
    let (ids, rest) = text.split_once("uid_map\n").unwrap_or_else(|| panic!("{out}"));
    let (uid_map, gid_map) = rest.split_once("gid_map\n").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(ids.lines().collect::<Vec<_>>(), ["0", "0"], "root inside\n{out}");
    for (file, map, host) in [("/etc/subuid", uid_map, uid()), ("/etc/subgid", gid_map, gid())] {
        let (start, count) = subids(file).expect("checked by with_subids");
        let want = vec![[0, host as u64, 1], [1, start as u64, count.min(65536) as u64]];
        assert_eq!(parse_id_map(map), want, "map vs {file}\n{out}");
    }
}

#[test]
fn keep_id_runs_as_host_user_and_files_are_theirs() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let data = ctx.mkdir("data");
    let vol = format!("{}:/data", data.display());
    let out =
        ctx.run(&["--rm", "--userns", "keep-id", "-v", &vol], &["sh", "-c", "id -u; id -g; echo hi > /data/written"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, [uid().to_string(), gid().to_string()], "keep-id: same uid and gid inside\n{out}");
    let md = fs::metadata(data.join("written")).unwrap_or_else(|e| panic!("/data/written on the host: {e}\n{out}"));
    assert_eq!((md.uid(), md.gid()), (uid(), gid()), "owned by the host user on the host\n{out}");
}

#[test]
fn user_by_name_gets_groups_from_etc_group() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let out = ctx.run(&["--rm", "-u", "user"], &["sh", "-c", "id -u; id -g; id -G; echo $HOME"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0..2], ["1000", "1000"], "{out}");
    let mut groups: Vec<u32> = lines[2].split_whitespace().filter_map(|g| g.parse().ok()).collect();
    groups.sort();
    assert_eq!(groups, [10, 29, 1000], "supplementary groups from /etc/group\n{out}");
    assert_eq!(lines[3], "/home/user", "HOME from /etc/passwd\n{out}");
}

#[test]
fn user_and_group_by_number_with_group_add() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let out = ctx.run(&["--rm", "-u", "1000:29", "--group-add", "wheel"], &["sh", "-c", "id -u; id -g; id -G"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0..2], ["1000", "29"], "{out}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(groups.contains(&"10"), "--group-add wheel adds gid 10\n{out}");
}

#[test]
fn unknown_user_is_refused() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm", "-u", "nosuchuser"], &["true"]);
    out.assert_error("nosuchuser");
}

#[test]
fn env_options_and_workdir() {
    let Some(ctx) = Ctx::new() else { return };
    let env_file = ctx.dir.join("env");
    fs::write(&env_file, "# a comment\nFROM_FILE=file value\n\nOVERRIDDEN=file\n").unwrap();
    let mut cmd = ctx.run_cmd(
        &[
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "OVERRIDDEN=cli",
            "-e",
            "FROM_RL",
            "-e",
            "PLAIN=a=b",
            "-w",
            "/tmp",
        ],
        &["sh", "-c", "echo \"$FROM_FILE|$OVERRIDDEN|$FROM_RL|$PLAIN|$NOT_PASSED\"; pwd"],
    );
    cmd.env("FROM_RL", "from rl's env").env("NOT_PASSED", "leak");
    let out = output(cmd, None);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["file value|cli|from rl's env|a=b|", "/tmp"], "{out}");
}

#[test]
fn default_environment_has_path_and_home() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["sh", "-c", "echo \"$HOME\"; echo \"$PATH\"; pwd"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "/root", "{out}");
    assert!(lines[1].split(':').any(|d| d == "/bin") && lines[1].split(':').any(|d| d == "/usr/bin"), "{out}");
    assert_eq!(lines[2], "/", "{out}");
}

#[test]
fn entrypoint_takes_the_command_as_arguments() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm", "--entrypoint", "/bin/echo"], &["from", "entrypoint"]);
    out.assert_ok();
    assert_eq!(out.stdout, "from entrypoint\n", "{out}");
}

#[test]
fn named_container_runs() {
    let Some(ctx) = Ctx::new() else { return };
    let name = format!("named-{}", ctx.marker);
    let out = ctx.run(&["--rm", "--name", &name], &["true"]);
    out.assert_ok();
    assert!(ctx.containers().is_empty(), "--rm leaves no container\n{out}");
}
