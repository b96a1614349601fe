use std::path::Path;

use openframe::config::{CliOverrides, Config};

use crate::helpers::spawn_with;

fn example() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
}

#[test]
fn the_config_example_parses_and_documents_exactly_the_defaults() {
    let parsed = Config::load(Some(example()), Vec::new(), &CliOverrides::default()).unwrap();
    assert_eq!(
        parsed,
        Config::default(),
        "config.example.toml must show every default as it is"
    );
}

#[test]
fn the_config_example_documents_every_key() {
    let text = std::fs::read_to_string(example()).unwrap();
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut missing = Vec::new();
    let mut sections: Vec<(String, &toml::Table)> = defaults
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, keys)| (name.clone(), keys.as_table().unwrap()))
        .collect();
    while let Some((section, keys)) = sections.pop() {
        assert!(
            text.contains(&format!("[{section}]")),
            "section [{section}] is not in the example"
        );
        for (key, value) in keys {
            let nested = format!("{section}.{key}");
            match value.as_table() {
                // A nested section, e.g. [storage.kafka]; other tables are inline maps.
                Some(keys) if text.contains(&format!("[{nested}]")) => {
                    sections.push((nested, keys))
                }
                _ if !text.contains(&format!("\n{key} = ")) => missing.push(nested),
                _ => {}
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}

#[tokio::test]
async fn file_environment_and_flags_combine_in_that_order_in_a_running_appliance() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("config.toml");
    let file_data = dir.path().join("from-file");
    let flag_data = dir.path().join("from-flag");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:1\"\npublic_url = \"https://file.example\"\n[storage]\ndata_dir = \"{}\"\n",
            file_data.display()
        ),
    )
    .unwrap();
    let environment = vec![
        (
            "OPENFRAME_SERVER__ADMIN_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "OPENFRAME_SERVER__PUBLIC_URL".to_owned(),
            "https://env.example".to_owned(),
        ),
    ];
    let flags = CliOverrides {
        data_dir: Some(flag_data.clone()),
        ..CliOverrides::default()
    };
    let config = Config::load(Some(&file), environment, &flags).unwrap();
    assert_eq!(config.public_url(), "https://env.example");

    let mut app = spawn_with(config).await;
    assert_eq!(
        app.https_addr.ip().to_string(),
        "127.0.0.1",
        "listen came from the file"
    );
    assert_ne!(
        app.admin_addr.port(),
        1,
        "the environment overrode the file's admin port"
    );
    assert_eq!(app.ready().await.0, 200);
    assert!(
        flag_data.join("events.redb").exists(),
        "the flag's data dir is used"
    );
    assert!(!file_data.exists(), "the file's data dir is not");
    app.stop().await.unwrap();
}
