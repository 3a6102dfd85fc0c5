//! The image store's verbs against a real registry (see tests/image_pull.rs): `tag`, `rmi`
//! (untag, delete with the layers no other image uses — deleted inside the user namespace, so
//! the layers/ dir is really empty on the host afterwards — and refusals while a container uses
//! the image), `image inspect`, `image prune`, `history` and `system df`.
mod common;

use common::*;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

/// Pulls `image` and returns its id.
fn pull(ctx: &Ctx, image: &str) -> String {
    let out = rl(ctx, &["pull", "-q", image]);
    out.assert_ok();
    out.stdout_trim().to_string()
}

/// `rl images --format json` as (id, names).
fn images(ctx: &Ctx) -> Vec<(String, Vec<String>)> {
    let out = rl(ctx, &["images", "--format", "json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let list = v.as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|i| {
            let names = i["Names"].as_array().cloned().unwrap_or_default();
            let names = names.iter().filter_map(|n| n.as_str().map(String::from)).collect();
            (i["Id"].as_str().unwrap_or_default().to_string(), names)
        })
        .collect()
}

fn hex(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

#[test]
fn tag_then_run_by_the_new_name() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let id = pull(&ctx, &format!("{reg}/test/busybox"));
    rl(&ctx, &["tag", &format!("{reg}/test/busybox"), "local/mine:v1"]).assert_ok();
    // By id prefix too; the target's tag defaults to `latest`.
    rl(&ctx, &["image", "tag", &hex(&id)[..12], "other"]).assert_ok();
    let list = images(&ctx);
    assert_eq!(list.len(), 1, "{list:?}");
    let want = [
        format!("{reg}/test/busybox:latest"),
        "docker.io/library/other:latest".into(),
        "docker.io/local/mine:v1".into(),
    ];
    let mut names = list[0].1.clone();
    names.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(names, want);
    let out = ctx.run_cmd_in_image(&["--rm", "--pull=never"], "local/mine:v1", &["echo", "tagged"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "tagged", "{out}");
    rl(&ctx, &["tag", "no-such-image", "x"]).assert_error("no-such-image");
    rl(&ctx, &["tag", "other", &format!("x@sha256:{}", hex(&id))]).assert_error("digest");
}

#[test]
fn rmi_untags_then_deletes_the_image_and_its_unshared_layers() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    let layered = format!("{reg}/test/layered:latest");
    pull(&ctx, &busybox);
    let layered_id = pull(&ctx, &layered);
    // busybox's one layer is layered's bottom layer: 3 layers in all.
    assert_eq!(ctx.store_entries("layers").len(), 3);
    rl(&ctx, &["tag", &layered, "extra"]).assert_ok();

    // One of two names: only untagged.
    let out = rl(&ctx, &["rmi", "extra"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "Untagged: docker.io/library/extra:latest", "{out}");
    assert_eq!(images(&ctx).len(), 2);
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &layered, &["true"]).assert_ok();

    // The last name: the image and its two own layers go, the shared one stays.
    let out = rl(&ctx, &["rmi", &layered]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("Untagged: {layered}"), "{out}");
    assert_eq!(lines[1], format!("Deleted: {layered_id}"), "{out}");
    assert_eq!(lines.len(), 4, "two layers deleted\n{out}");
    assert_eq!(ctx.store_entries("layers").len(), 1, "the shared layer stays");
    assert_eq!(ctx.store_entries("tmp"), Vec::<String>::new(), "no staging leftovers");
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &busybox, &["true"]).assert_ok();

    // busybox's layer holds files of subordinate ids (/home/user): deleted in the namespace.
    let out = rl(&ctx, &["image", "rm", &busybox]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("Untagged: {busybox}")), "{out}");
    assert_eq!(ctx.store_entries("layers"), Vec::<String>::new(), "layers/ is empty on the host");
    assert_eq!(ctx.store_entries("tmp"), Vec::<String>::new(), "no staging leftovers");
    assert_eq!(ctx.store_entries("images"), vec!["tags.json".to_string()]);
    rl(&ctx, &["rmi", &busybox]).assert_error("no such image");
}

#[test]
fn rmi_is_refused_while_a_container_uses_the_image() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/busybox:latest");
    let id = pull(&ctx, &image);
    let name = format!("keep{}", ctx.marker);
    ctx.run_cmd_in_image(&["--name", &name, "--pull=never"], &image, &["true"]).assert_ok();
    rl(&ctx, &["rmi", &image]).assert_error(&name);
    rl(&ctx, &["rmi", &hex(&id)[..12]]).assert_error(&name);
    assert_eq!(images(&ctx).len(), 1, "refused: nothing changed");
    let out = rl(&ctx, &["rmi", "-f", &image]);
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!("Untagged: {image}")) && out.stdout.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert!(images(&ctx).is_empty());
    // The stopped container's rootfs still lists the layer: it stays (as Docker keeps it).
    assert_eq!(ctx.store_entries("layers").len(), 1);
    assert_eq!(ctx.store_entries("tmp"), Vec::<String>::new(), "no staging leftovers");
}

#[test]
fn rmi_by_id_with_names_in_several_repositories_needs_force() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/busybox:latest");
    let id = pull(&ctx, &image);
    rl(&ctx, &["tag", &image, "second"]).assert_ok();
    rl(&ctx, &["rmi", &id]).assert_error("multiple repositories");
    assert_eq!(images(&ctx)[0].1.len(), 2);
    let out = rl(&ctx, &["rmi", "-f", &id]);
    out.assert_ok();
    assert_eq!(out.stdout.matches("Untagged: ").count(), 2, "{out}");
    assert!(out.stdout.contains(&format!("Deleted: {id}")), "{out}");
    assert!(images(&ctx).is_empty());
    assert_eq!(ctx.store_entries("layers"), Vec::<String>::new());
}

#[test]
fn inspect_shows_dockers_fields() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/layered:latest");
    let id = pull(&ctx, &image);
    let out = rl(&ctx, &["image", "inspect", &image]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let i = &v[0];
    assert_eq!(i["Id"], serde_json::json!(id), "{out}");
    assert_eq!(i["RepoTags"], serde_json::json!([image]), "{out}");
    let digest = i["RepoDigests"][0].as_str().unwrap_or_default();
    assert!(digest.starts_with(&format!("{reg}/test/layered@sha256:")), "{out}");
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["sh"]), "{out}");
    assert_eq!(i["Config"]["WorkingDir"], "/data", "{out}");
    assert_eq!(i["Config"]["StopSignal"], "SIGUSR1", "{out}");
    assert!(i["Config"]["Env"].as_array().is_some_and(|e| e.contains(&serde_json::json!("LAYERED=1"))), "{out}");
    assert_eq!(i["Config"]["Entrypoint"], serde_json::Value::Null, "{out}");
    assert_eq!(i["Os"], "linux", "{out}");
    assert!(i["Architecture"].as_str().is_some_and(|a| !a.is_empty()), "{out}");
    assert_eq!(i["Created"], "2024-01-01T00:00:00Z", "{out}");
    assert_eq!(i["RootFS"]["Type"], "layers", "{out}");
    assert_eq!(i["RootFS"]["Layers"].as_array().map(Vec::len), Some(3), "{out}");
    // A name given by `rl tag` is no repository the image was pulled from: no digest there.
    rl(&ctx, &["tag", &image, "mine"]).assert_ok();
    let out = rl(&ctx, &["image", "inspect", "mine"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(v[0]["RepoTags"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(v[0]["RepoDigests"].as_array().map(Vec::len), Some(1), "{out}");
    // By id prefix; a missing image is an error beside the ones found.
    let out = rl(&ctx, &["image", "inspect", &hex(&id)[..8], "nosuch"]);
    out.assert_error("nosuch");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
}

#[test]
fn prune_removes_dangling_images_and_with_all_unused_ones() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    let layered = format!("{reg}/test/layered:latest");
    let busybox_id = pull(&ctx, &busybox);
    let layered_id = pull(&ctx, &layered);
    let zstd_id = pull(&ctx, &format!("{reg}/test/zstd"));
    // Moving busybox's name to layered leaves the busybox image dangling; zstd is in use.
    rl(&ctx, &["tag", &layered, &busybox]).assert_ok();
    ctx.run_cmd_in_image(&["--pull=never"], &zstd_id, &["true"]).assert_ok();
    let list = rl(&ctx, &["images"]);
    assert!(list.stdout.contains("<none>"), "{list}");
    // Without -f it asks; empty stdin is no.
    let out = rl(&ctx, &["image", "prune"]);
    out.assert_ok();
    assert!(out.stderr.contains("Are you sure"), "{out}");
    assert_eq!(images(&ctx).len(), 3);

    let out = rl(&ctx, &["image", "prune", "-f"]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("deleted: {busybox_id}")), "{out}");
    assert!(out.stdout.contains("Total reclaimed space: "), "{out}");
    let ids: Vec<String> = images(&ctx).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&layered_id) && ids.contains(&zstd_id));

    let out = rl(&ctx, &["image", "prune", "-a", "-f"]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("deleted: {layered_id}")), "{out}");
    assert!(!out.stdout.contains(&zstd_id), "the container's image stays\n{out}");
    assert!(!out.stdout.contains("Total reclaimed space: 0B"), "{out}");
    assert_eq!(images(&ctx).len(), 1);
    // What remains: zstd's two layers (its busybox layer is the shared one).
    assert_eq!(ctx.store_entries("layers").len(), 2);
    assert_eq!(ctx.store_entries("tmp"), Vec::<String>::new(), "no staging leftovers");
}

#[test]
fn history_lists_the_entries_newest_first() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/layered");
    let id = pull(&ctx, &image);
    let out = rl(&ctx, &["history", &image]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "a header and 7 entries\n{out}");
    assert!(lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY") && lines[0].contains("SIZE"), "{out}");
    assert!(lines[1].starts_with(&hex(&id)[..12]) && lines[1].contains(r#"CMD ["sh"]"#), "{out}");
    assert!(lines[1].contains("ago") && lines[2].starts_with("<missing>"), "{out}");
    assert!(lines[7].contains("ADD busybox-static /bin") && lines[7].contains('…'), "cut at 45\n{out}");
    let full = rl(&ctx, &["image", "history", "--no-trunc", &image]);
    assert!(full.stdout.contains("ADD busybox-static /bin (+ applet links, /etc/passwd, /etc/group)"), "{full}");
    let json = rl(&ctx, &["history", "--format", "json", &image]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let entries = v.as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 7, "{json}");
    for e in &entries {
        let size = e["Size"].as_u64().unwrap_or_else(|| panic!("a size\n{json}"));
        assert_eq!(e["EmptyLayer"].as_bool(), Some(size == 0), "empty entries have no bytes\n{json}");
    }
}

#[test]
fn system_df_counts_images_and_containers() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    pull(&ctx, &format!("{reg}/test/busybox"));
    pull(&ctx, &format!("{reg}/test/layered"));
    let out = rl(&ctx, &["system", "df"]);
    out.assert_ok();
    let row = out.stdout.lines().find(|l| l.starts_with("Images")).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["2", "0"], "2 images, none in use\n{out}");
    ctx.run_cmd_in_image(&["--pull=never"], &format!("{reg}/test/busybox"), &["sh", "-c", "echo x >/new"]).assert_ok();
    let json = rl(&ctx, &["system", "df", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert_eq!(v[0]["TotalCount"], 2, "{json}");
    assert_eq!(v[0]["Active"], 1, "{json}");
    assert!(v[0]["Size"].as_u64().is_some_and(|s| s > 100_000), "busybox is big\n{json}");
    assert!(v[0]["Reclaimable"].as_u64() < v[0]["Size"].as_u64(), "the used layer is not reclaimable\n{json}");
    assert_eq!(v[1]["TotalCount"], 1, "{json}");
    assert!(v[1]["Size"].as_u64().is_some_and(|s| s >= 2), "the upper dir holds /new\n{json}");
}
