//! Every stored file goes through the `FileStore`: given a store that keeps files in memory
//! (as an object store would), uploads, serving and deletion all work and nothing is
//! written to the data directory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;
use xcord_core::storage::{FileSpace, FileStore, StoredFile};
use xcord_testkit::{Backend, TestApp, TestAppBuilder, on_both_backends, room, wait_until};

on_both_backends!(every_stored_file_goes_through_the_file_store);

/// Files in memory, by space and key.
#[derive(Debug, Default)]
struct MemoryFiles {
    // No await while locked: every critical section is a map operation.
    files: Mutex<HashMap<(FileSpace, String), Vec<u8>>>,
}

impl MemoryFiles {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(FileSpace, String), Vec<u8>>> {
        self.files
            .lock()
            .unwrap_or_else(|_| panic!("a file store call panicked"))
    }

    /// The keys held in `space`, sorted.
    fn keys(&self, space: FileSpace) -> Vec<String> {
        let mut keys: Vec<String> = self
            .map()
            .keys()
            .filter(|(s, _)| *s == space)
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort();
        keys
    }
}

#[async_trait]
impl FileStore for MemoryFiles {
    async fn put(&self, space: FileSpace, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.map().insert((space, key.to_owned()), bytes.to_vec());
        Ok(())
    }

    async fn open(&self, space: FileSpace, key: &str) -> anyhow::Result<Option<StoredFile>> {
        Ok(self
            .map()
            .get(&(space, key.to_owned()))
            .map(|bytes| StoredFile {
                len: bytes.len() as u64,
                reader: Box::new(std::io::Cursor::new(bytes.clone())),
            }))
    }

    async fn delete(&self, space: FileSpace, key: &str) -> anyhow::Result<()> {
        self.map().remove(&(space, key.to_owned()));
        Ok(())
    }
}

fn png_of(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(w, h)
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// Posts `bytes` as the multipart part `field` to `/api/v1{path}`.
async fn upload(
    app: &TestApp,
    token: &str,
    path: &str,
    field: &str,
    bytes: Vec<u8>,
) -> xcord_testkit::TestResponse {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("upload.png")
        .mime_str("image/png")
        .expect("mime");
    let res = app
        .client
        .post(app.url(&format!("/api/v1{path}")))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part(field.to_owned(), part))
        .send()
        .await
        .expect("upload");
    TestApp::read(res).await
}

/// `GET url`: the status and the body's bytes.
async fn fetch(app: &TestApp, url: &str) -> (u16, Vec<u8>) {
    let res = app.client.get(app.url(url)).send().await.expect("get");
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("body").to_vec())
}

async fn every_stored_file_goes_through_the_file_store(backend: Backend) {
    let files = Arc::new(MemoryFiles::default());
    let app = TestAppBuilder::new(backend)
        .files(files.clone())
        .spawn()
        .await;
    let r = room(&app, "files").await;

    let avatar = png_of(5, 5);
    let url = upload(
        &app,
        &r.owner.token,
        "/users/@me/avatar",
        "avatar",
        avatar.clone(),
    )
    .await
    .expect_status(200, "upload an avatar")
    .str_at("/avatarUrl");
    assert_eq!(fetch(&app, &url).await, (200, avatar));

    use base64::Engine as _;
    let icon = png_of(8, 2);
    let data = base64::engine::general_purpose::STANDARD.encode(&icon);
    let icon_url = app
        .patch_as(
            &r.owner.token,
            &format!("/servers/{}", r.server),
            &json!({"icon": format!("data:image/png;base64,{data}")}),
        )
        .await
        .expect_status(200, "set the server icon")
        .str_at("/icon");
    assert_eq!(fetch(&app, &icon_url).await, (200, icon));

    let doc = png_of(3, 7);
    let att = upload(
        &app,
        &r.member.token,
        &format!("/channels/{}/attachments", r.channel),
        "file",
        doc.clone(),
    )
    .await;
    att.expect_status(201, "upload an attachment");
    let att_id = att.str_at("/id");
    let link = app
        .post_as(
            &r.member.token,
            &format!("/channels/{}/messages", r.channel),
            &json!({"content": "", "attachmentIds": [att_id]}),
        )
        .await
        .expect_status(201, "post the attachment")
        .str_at("/attachments/0/url");
    assert_eq!(fetch(&app, &link).await, (200, doc));

    // The store holds each file under the key the documentation gives; the data directory
    // holds none of them.
    let mut public = vec![
        url.trim_start_matches("/cdn/").to_owned(),
        icon_url.trim_start_matches("/cdn/").to_owned(),
    ];
    public.sort();
    assert_eq!(files.keys(FileSpace::Public), public);
    assert!(public[0].starts_with(&format!("avatars/{}/", r.owner.id)));
    assert!(public[1].starts_with(&format!("icons/{}/", r.server)));
    assert_eq!(
        files.keys(FileSpace::Attachments),
        [format!("{}/{att_id}", r.channel)]
    );
    for folder in ["cdn", "attachments"] {
        assert!(
            !app.data_dir().join(folder).exists(),
            "{folder}/ was written"
        );
    }

    // Deleting the channel deletes its attachments from the store.
    app.delete_as(&r.owner.token, &format!("/channels/{}", r.channel))
        .await
        .expect_status(204, "delete the channel");
    wait_until(|| {
        let left = files.keys(FileSpace::Attachments);
        async move { left.is_empty() }
    })
    .await;
}
