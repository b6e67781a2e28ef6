//! A channel holds at most 50 pins, also when pins race for the last place.

use serde_json::json;
use xcord_testkit::{Backend, on_both_backends, room, say, spawn_app, string_at};

on_both_backends!(the_fifty_first_pin_is_refused_even_in_a_race);

async fn the_fifty_first_pin_is_refused_even_in_a_race(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = room(&app, "pinlimit").await;
    let mut ids = Vec::new();
    for n in 0..51 {
        let m = say(&app, &r.owner, &r.channel, &format!("m{n}")).await;
        ids.push(string_at(&m, "/id"));
    }
    let pin = |id: &str| format!("/channels/{}/pins/{id}", r.channel);
    let body = json!({});
    for id in &ids[..49] {
        app.put_as(&r.owner.token, &pin(id), &body)
            .await
            .expect_status(204, "pin");
    }
    // Two pins race for the last place: exactly one gets it.
    let (p49, p50) = (pin(&ids[49]), pin(&ids[50]));
    let (a, b) = tokio::join!(
        app.put_as(&r.owner.token, &p49, &body),
        app.put_as(&r.owner.token, &p50, &body),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 422], "{} / {}", a.text, b.text);
    let refused = if a.status == 422 { &a } else { &b };
    assert!(refused.text.contains("maxPins"), "{}", refused.text);
    let pins = app
        .get_as(&r.owner.token, &format!("/channels/{}/pins", r.channel))
        .await;
    assert_eq!(pins.body["messages"].as_array().map_or(0, Vec::len), 50);
}
