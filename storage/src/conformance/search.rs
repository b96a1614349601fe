//! The conformance suite of [`SearchIndex`]: the contract of `search.rs`, checked through the trait
//! only, so the embedded tantivy engine and any future connector answer to the same cases.
//!
//! Every case refreshes before it asserts on search results: when documents become visible without
//! a refresh depends on each engine's commit policy and on timing, so the suite never asserts that
//! something is *not yet* visible, only that everything is visible after [`SearchIndex::refresh`].
//! Cases use their own tenants (see [`super::tenant`]), so they may share one store.

// The cases are tests: a broken expectation must fail loudly, with the store's error in the
// message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::error::SearchError;
use crate::model::{TenantId, UnixMillis};
use crate::search::{DocumentKind, MAX_HITS, SearchDocument, SearchHit, SearchIndex, SearchQuery};

/// Instantiates the search conformance suite for one engine: one `#[tokio::test]` per case.
///
/// `$factory` is an expression evaluating to a future of `(store, guard)`, where `store`
/// dereferences to something implementing [`SearchIndex`] (a `Box` or an `Arc`) and `guard` keeps
/// the engine's files alive until the test ends.
#[macro_export]
macro_rules! search_conformance {
    ($factory:expr) => {
        $crate::search_conformance!(@cases $factory;
            a_word_matches_in_each_of_the_five_text_fields,
            all_words_must_match,
            matching_ignores_case,
            a_quoted_phrase_matches_adjacent_words_in_order,
            a_minus_word_excludes_documents,
            the_kind_filter_restricts_hits_to_one_kind,
            the_time_range_includes_from_and_excludes_to,
            indexing_an_id_again_replaces_the_document,
            delete_removes_documents_by_id_and_kind,
            delete_before_removes_older_documents_of_the_kind_only,
            tenants_never_see_or_touch_each_others_documents,
            equal_scores_rank_newest_first,
            a_better_match_ranks_before_a_newer_one,
            an_empty_query_with_filters_lists_newest_first,
            the_limit_keeps_the_best_hits,
            hostile_input_is_matched_as_words_without_error,
            a_limit_outside_the_allowed_range_is_rejected,
            documents_are_visible_after_refresh,
            empty_batches_are_harmless,
            empty_and_overlong_ids_are_refused_whole,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $factory.await;
                $crate::conformance::search::$case(&*store).await;
                // Closing lets the engine finish its background work before the guard removes
                // its files; the result is not part of the case.
                let _ = $crate::Engine::close(&*store).await;
            }
        )*
    };
}

fn log(id: &str, timestamp: UnixMillis, summary: &str) -> SearchDocument {
    SearchDocument {
        kind: DocumentKind::Log,
        id: id.to_owned(),
        timestamp,
        summary: summary.to_owned(),
        message: String::new(),
        hostname: String::new(),
        organization_name: String::new(),
        user: String::new(),
    }
}

fn device(id: &str, timestamp: UnixMillis, hostname: &str) -> SearchDocument {
    SearchDocument {
        kind: DocumentKind::Device,
        hostname: hostname.to_owned(),
        ..log(id, timestamp, "")
    }
}

fn words(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_owned(),
        kind: None,
        from: None,
        to: None,
        limit: 100,
    }
}

async fn index(store: &dyn SearchIndex, tenant: &TenantId, documents: Vec<SearchDocument>) {
    if let Err(error) = store.index(tenant, documents).await {
        panic!("indexing for {tenant} failed: {error}");
    }
}

async fn refresh(store: &dyn SearchIndex) {
    if let Err(error) = store.refresh().await {
        panic!("refresh failed: {error}");
    }
}

async fn hits(store: &dyn SearchIndex, tenant: &TenantId, query: &SearchQuery) -> Vec<SearchHit> {
    match store.search(tenant, query).await {
        Ok(hits) => hits,
        Err(error) => panic!("searching {tenant} for {query:?} failed: {error}"),
    }
}

/// The ids of the hits, in the order the store ranked them.
async fn ranked_ids(
    store: &dyn SearchIndex,
    tenant: &TenantId,
    query: &SearchQuery,
) -> Vec<String> {
    hits(store, tenant, query)
        .await
        .into_iter()
        .map(|hit| hit.id)
        .collect()
}

/// The ids of the hits, sorted, for cases about which documents match rather than their order.
async fn matching_ids(store: &dyn SearchIndex, tenant: &TenantId, text: &str) -> Vec<String> {
    let mut ids = ranked_ids(store, tenant, &words(text)).await;
    ids.sort();
    ids
}

/// `kind/id` labels of the hits, sorted.
async fn matching_labels(
    store: &dyn SearchIndex,
    tenant: &TenantId,
    query: &SearchQuery,
) -> Vec<String> {
    let mut labels: Vec<String> = hits(store, tenant, query)
        .await
        .into_iter()
        .map(|hit| format!("{:?}/{}", hit.kind, hit.id))
        .collect();
    labels.sort();
    labels
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

pub async fn a_word_matches_in_each_of_the_five_text_fields(store: &dyn SearchIndex) {
    let tenant = super::tenant("a_word_matches_in_each_of_the_five_text_fields");
    let blank = log("blank", 1_000, "");
    let documents = vec![
        SearchDocument {
            id: "in-summary".into(),
            summary: "alpha".into(),
            ..blank.clone()
        },
        SearchDocument {
            id: "in-message".into(),
            message: "bravo".into(),
            ..blank.clone()
        },
        SearchDocument {
            id: "in-hostname".into(),
            hostname: "charlie".into(),
            ..blank.clone()
        },
        SearchDocument {
            id: "in-organization".into(),
            organization_name: "delta".into(),
            ..blank.clone()
        },
        SearchDocument {
            id: "in-user".into(),
            user: "echo".into(),
            ..blank.clone()
        },
        SearchDocument {
            id: "elsewhere".into(),
            summary: "foxtrot".into(),
            message: "foxtrot".into(),
            hostname: "foxtrot".into(),
            organization_name: "foxtrot".into(),
            user: "foxtrot".into(),
            ..blank
        },
    ];
    index(store, &tenant, documents).await;
    refresh(store).await;

    for (word, id) in [
        ("alpha", "in-summary"),
        ("bravo", "in-message"),
        ("charlie", "in-hostname"),
        ("delta", "in-organization"),
        ("echo", "in-user"),
        ("foxtrot", "elsewhere"),
    ] {
        assert_eq!(
            matching_ids(store, &tenant, word).await,
            strings(&[id]),
            "searching {word:?}"
        );
    }
    assert!(matching_ids(store, &tenant, "golf").await.is_empty());
}

pub async fn all_words_must_match(store: &dyn SearchIndex) {
    let tenant = super::tenant("all_words_must_match");
    index(
        store,
        &tenant,
        vec![
            log("disk-full-web", 1_000, "disk full on web01"),
            log("disk-ok-web", 2_000, "disk ok on web01"),
            log("memory-full-db", 3_000, "memory full on db01"),
            SearchDocument {
                hostname: "nas01".into(),
                ..log("backup-nas", 4_000, "backup failed")
            },
        ],
    )
    .await;
    refresh(store).await;

    assert_eq!(
        matching_ids(store, &tenant, "disk full").await,
        strings(&["disk-full-web"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "full").await,
        strings(&["disk-full-web", "memory-full-db"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "disk web01").await,
        strings(&["disk-full-web", "disk-ok-web"])
    );
    // Each word exists, but never both in one document.
    assert!(matching_ids(store, &tenant, "disk db01").await.is_empty());
    // The words of one query may match in different fields of the same document.
    assert_eq!(
        matching_ids(store, &tenant, "failed nas01").await,
        strings(&["backup-nas"])
    );
}

pub async fn matching_ignores_case(store: &dyn SearchIndex) {
    let tenant = super::tenant("matching_ignores_case");
    index(
        store,
        &tenant,
        vec![SearchDocument {
            user: "Alice.Admin".into(),
            ..log("shouting", 1_000, "Disk FULL on WEB01")
        }],
    )
    .await;
    refresh(store).await;

    for text in ["disk full web01", "DISK", "Web01", "fUlL", "alice", "ADMIN"] {
        assert_eq!(
            matching_ids(store, &tenant, text).await,
            strings(&["shouting"]),
            "searching {text:?}"
        );
    }
}

pub async fn a_quoted_phrase_matches_adjacent_words_in_order(store: &dyn SearchIndex) {
    let tenant = super::tenant("a_quoted_phrase_matches_adjacent_words_in_order");
    index(
        store,
        &tenant,
        vec![
            log("disk-full", 1_000, "disk full on server"),
            log("full-disk", 2_000, "full disk on server"),
            log("disk-is-full", 3_000, "the disk is full"),
            SearchDocument {
                message: "full".into(),
                ..log("split-across-fields", 4_000, "disk")
            },
        ],
    )
    .await;
    refresh(store).await;

    assert_eq!(
        matching_ids(store, &tenant, "\"disk full\"").await,
        strings(&["disk-full"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "\"full disk\"").await,
        strings(&["full-disk"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "\"DISK Full\" server").await,
        strings(&["disk-full"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "disk full").await,
        strings(&[
            "disk-full",
            "disk-is-full",
            "full-disk",
            "split-across-fields"
        ])
    );
    assert!(
        matching_ids(store, &tenant, "\"server disk\"")
            .await
            .is_empty()
    );
}

pub async fn a_minus_word_excludes_documents(store: &dyn SearchIndex) {
    let tenant = super::tenant("a_minus_word_excludes_documents");
    index(
        store,
        &tenant,
        vec![
            log("full-web", 1_000, "disk full on web01"),
            log("full-db", 2_000, "disk full on db01"),
            log("ok-web", 3_000, "disk ok on web01"),
            SearchDocument {
                hostname: "web01".into(),
                ..log("full-host-web", 4_000, "disk full")
            },
        ],
    )
    .await;
    refresh(store).await;

    // The excluded word is excluded whichever field holds it.
    assert_eq!(
        matching_ids(store, &tenant, "disk -web01").await,
        strings(&["full-db"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "disk full -db01").await,
        strings(&["full-host-web", "full-web"])
    );
    assert_eq!(
        matching_ids(store, &tenant, "disk -WEB01 -db01").await,
        Vec::<String>::new()
    );
    // An exclusion alone lists everything else.
    assert_eq!(
        matching_ids(store, &tenant, "-web01").await,
        strings(&["full-db"])
    );
    // Excluding a word nobody has excludes nothing.
    assert_eq!(
        matching_ids(store, &tenant, "ok -zebra").await,
        strings(&["ok-web"])
    );
}

pub async fn the_kind_filter_restricts_hits_to_one_kind(store: &dyn SearchIndex) {
    let tenant = super::tenant("the_kind_filter_restricts_hits_to_one_kind");
    // The same id as a log and as a device: ids are unique per kind, so these are two documents.
    index(
        store,
        &tenant,
        vec![
            log("m1", 1_000, "kestrel rebooted"),
            log("l2", 2_000, "kestrel patched"),
            device("m1", 3_000, "kestrel"),
        ],
    )
    .await;
    refresh(store).await;

    let logs = SearchQuery {
        kind: Some(DocumentKind::Log),
        ..words("kestrel")
    };
    let devices = SearchQuery {
        kind: Some(DocumentKind::Device),
        ..words("kestrel")
    };
    assert_eq!(
        matching_labels(store, &tenant, &logs).await,
        strings(&["Log/l2", "Log/m1"])
    );
    assert_eq!(
        matching_labels(store, &tenant, &devices).await,
        strings(&["Device/m1"])
    );
    assert_eq!(
        matching_labels(store, &tenant, &words("kestrel")).await,
        strings(&["Device/m1", "Log/l2", "Log/m1"])
    );
}

pub async fn the_time_range_includes_from_and_excludes_to(store: &dyn SearchIndex) {
    let tenant = super::tenant("the_time_range_includes_from_and_excludes_to");
    index(
        store,
        &tenant,
        vec![
            log("t1000", 1_000, "kestrel"),
            log("t2000", 2_000, "kestrel"),
            log("t3000", 3_000, "kestrel"),
        ],
    )
    .await;
    refresh(store).await;

    let range = |from: Option<UnixMillis>, to: Option<UnixMillis>| SearchQuery {
        from,
        to,
        ..words("kestrel")
    };
    let cases: [(Option<UnixMillis>, Option<UnixMillis>, &[&str]); 7] = [
        (Some(2_000), Some(3_000), &["t2000"]),
        (Some(2_000), None, &["t3000", "t2000"]),
        (None, Some(2_000), &["t1000"]),
        (Some(1_000), Some(3_001), &["t3000", "t2000", "t1000"]),
        (Some(1_000), Some(1_000), &[]),
        (Some(3_001), None, &[]),
        (Some(3_000), Some(1_000), &[]),
    ];
    for (from, to, expected) in cases {
        let query = range(from, to);
        assert_eq!(
            ranked_ids(store, &tenant, &query).await,
            strings(expected),
            "{query:?}"
        );
    }
}

pub async fn indexing_an_id_again_replaces_the_document(store: &dyn SearchIndex) {
    let tenant = super::tenant("indexing_an_id_again_replaces_the_document");
    index(store, &tenant, vec![log("x", 1_000, "alpha")]).await;
    refresh(store).await;
    assert_eq!(matching_ids(store, &tenant, "alpha").await, strings(&["x"]));

    index(store, &tenant, vec![log("x", 2_000, "bravo")]).await;
    refresh(store).await;
    assert!(matching_ids(store, &tenant, "alpha").await.is_empty());
    let replaced = hits(store, &tenant, &words("bravo")).await;
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_eq!(
        (replaced[0].id.as_str(), replaced[0].timestamp),
        ("x", 2_000)
    );

    // Indexing an identical document again still leaves one document.
    index(store, &tenant, vec![log("x", 2_000, "bravo")]).await;
    refresh(store).await;
    assert_eq!(
        ranked_ids(store, &tenant, &words("bravo")).await,
        strings(&["x"])
    );

    // Within one batch, the last version of an id wins.
    index(
        store,
        &tenant,
        vec![log("y", 3_000, "charlie"), log("y", 4_000, "delta")],
    )
    .await;
    refresh(store).await;
    assert!(matching_ids(store, &tenant, "charlie").await.is_empty());
    assert_eq!(
        ranked_ids(store, &tenant, &words("delta")).await,
        strings(&["y"])
    );
}

pub async fn delete_removes_documents_by_id_and_kind(store: &dyn SearchIndex) {
    let tenant = super::tenant("delete_removes_documents_by_id_and_kind");
    index(
        store,
        &tenant,
        vec![
            log("a", 1_000, "kestrel"),
            log("b", 2_000, "kestrel"),
            log("c", 3_000, "kestrel"),
            device("a", 4_000, "kestrel"),
        ],
    )
    .await;
    refresh(store).await;

    let removed = strings(&["a", "c", "never-indexed"]);
    if let Err(error) = store.delete(&tenant, DocumentKind::Log, removed).await {
        panic!("delete failed: {error}");
    }
    // Deleting an id of the wrong kind removes nothing.
    if let Err(error) = store
        .delete(&tenant, DocumentKind::Device, strings(&["b"]))
        .await
    {
        panic!("delete failed: {error}");
    }
    refresh(store).await;
    assert_eq!(
        matching_labels(store, &tenant, &words("kestrel")).await,
        strings(&["Device/a", "Log/b"])
    );
}

pub async fn delete_before_removes_older_documents_of_the_kind_only(store: &dyn SearchIndex) {
    let tenant = super::tenant("delete_before_removes_older_documents_of_the_kind_only");
    index(
        store,
        &tenant,
        vec![
            log("t1000", 1_000, "kestrel"),
            log("t1999", 1_999, "kestrel"),
            log("t2000", 2_000, "kestrel"),
            log("t3000", 3_000, "kestrel"),
            device("d500", 500, "kestrel"),
        ],
    )
    .await;
    refresh(store).await;

    if let Err(error) = store.delete_before(&tenant, DocumentKind::Log, 2_000).await {
        panic!("delete_before failed: {error}");
    }
    refresh(store).await;
    assert_eq!(
        matching_labels(store, &tenant, &words("kestrel")).await,
        strings(&["Device/d500", "Log/t2000", "Log/t3000"])
    );
}

pub async fn tenants_never_see_or_touch_each_others_documents(store: &dyn SearchIndex) {
    let tenant = super::tenant("tenants_never_see_or_touch_each_others_documents");
    let other = super::tenant("tenants_never_see_or_touch_each_others_documents-other");
    // The same ids in both tenants.
    index(
        store,
        &tenant,
        vec![
            log("1", 1_000, "kestrel alpha"),
            log("2", 2_000, "kestrel alpha"),
        ],
    )
    .await;
    index(
        store,
        &other,
        vec![
            log("1", 5_000, "kestrel bravo"),
            log("2", 6_000, "kestrel bravo"),
        ],
    )
    .await;
    refresh(store).await;

    let own = hits(store, &tenant, &words("kestrel")).await;
    let mut own_documents: Vec<(String, UnixMillis)> =
        own.into_iter().map(|hit| (hit.id, hit.timestamp)).collect();
    own_documents.sort();
    assert_eq!(
        own_documents,
        vec![("1".to_owned(), 1_000), ("2".to_owned(), 2_000)]
    );
    assert!(matching_ids(store, &tenant, "bravo").await.is_empty());
    assert!(matching_ids(store, &other, "alpha").await.is_empty());

    // Writes in one tenant leave the other's documents with the same ids alone.
    if let Err(error) = store
        .delete(&tenant, DocumentKind::Log, strings(&["1"]))
        .await
    {
        panic!("delete failed: {error}");
    }
    index(store, &tenant, vec![log("2", 2_500, "charlie")]).await;
    refresh(store).await;
    assert_eq!(
        matching_ids(store, &tenant, "kestrel").await,
        Vec::<String>::new()
    );
    assert_eq!(
        matching_ids(store, &tenant, "charlie").await,
        strings(&["2"])
    );
    assert_eq!(
        matching_ids(store, &other, "kestrel bravo").await,
        strings(&["1", "2"])
    );
    assert!(matching_ids(store, &other, "charlie").await.is_empty());

    if let Err(error) = store
        .delete_before(&tenant, DocumentKind::Log, UnixMillis::MAX)
        .await
    {
        panic!("delete_before failed: {error}");
    }
    refresh(store).await;
    assert!(matching_ids(store, &tenant, "charlie").await.is_empty());
    assert_eq!(
        matching_ids(store, &other, "kestrel").await,
        strings(&["1", "2"])
    );
}

pub async fn equal_scores_rank_newest_first(store: &dyn SearchIndex) {
    let tenant = super::tenant("equal_scores_rank_newest_first");
    // Indexed out of time order and across two refreshes, so neither insertion order nor
    // storage layout can explain the ranking.
    index(
        store,
        &tenant,
        vec![
            log("t3", 3_000, "kestrel report"),
            log("t1", 1_000, "kestrel report"),
        ],
    )
    .await;
    refresh(store).await;
    index(
        store,
        &tenant,
        vec![
            log("t4", 4_000, "kestrel report"),
            log("t2", 2_000, "kestrel report"),
        ],
    )
    .await;
    refresh(store).await;

    assert_eq!(
        ranked_ids(store, &tenant, &words("kestrel")).await,
        strings(&["t4", "t3", "t2", "t1"])
    );
}

pub async fn a_better_match_ranks_before_a_newer_one(store: &dyn SearchIndex) {
    let tenant = super::tenant("a_better_match_ranks_before_a_newer_one");
    index(
        store,
        &tenant,
        vec![
            log("strong-old", 1_000, "kestrel kestrel kestrel"),
            log(
                "weak-new",
                9_000,
                "a long summary that mentions kestrel once among many other unrelated words",
            ),
        ],
    )
    .await;
    refresh(store).await;

    let ranked = hits(store, &tenant, &words("kestrel")).await;
    let ids: Vec<&str> = ranked.iter().map(|hit| hit.id.as_str()).collect();
    assert_eq!(ids, ["strong-old", "weak-new"]);
    assert!(ranked[0].score > ranked[1].score, "{ranked:?}");
}

pub async fn an_empty_query_with_filters_lists_newest_first(store: &dyn SearchIndex) {
    let tenant = super::tenant("an_empty_query_with_filters_lists_newest_first");
    index(
        store,
        &tenant,
        vec![
            log("t3000", 3_000, "memory pressure"),
            log("t1000", 1_000, "disk full"),
            log("t5000", 5_000, "user logged in"),
            log("t2000", 2_000, "disk full disk full disk full"),
            log("t4000", 4_000, ""),
            device("d6000", 6_000, "web01"),
        ],
    )
    .await;
    refresh(store).await;

    let logs = SearchQuery {
        kind: Some(DocumentKind::Log),
        ..words("")
    };
    assert_eq!(
        ranked_ids(store, &tenant, &logs).await,
        strings(&["t5000", "t4000", "t3000", "t2000", "t1000"])
    );
    let window = SearchQuery {
        from: Some(2_000),
        to: Some(4_000),
        ..words("   ")
    };
    assert_eq!(
        ranked_ids(store, &tenant, &window).await,
        strings(&["t3000", "t2000"])
    );
    let newest_two = SearchQuery { limit: 2, ..logs };
    assert_eq!(
        ranked_ids(store, &tenant, &newest_two).await,
        strings(&["t5000", "t4000"])
    );
}

pub async fn the_limit_keeps_the_best_hits(store: &dyn SearchIndex) {
    let tenant = super::tenant("the_limit_keeps_the_best_hits");
    let documents = (1..=20)
        .map(|n| log(&format!("t{n:02}"), n * 1_000, "kestrel"))
        .collect();
    index(store, &tenant, documents).await;
    refresh(store).await;

    for limit in [1, 3, 20] {
        let query = SearchQuery {
            limit,
            ..words("kestrel")
        };
        let expected: Vec<String> = (1..=20)
            .rev()
            .take(limit)
            .map(|n| format!("t{n:02}"))
            .collect();
        assert_eq!(
            ranked_ids(store, &tenant, &query).await,
            expected,
            "limit {limit}"
        );
    }
}

pub async fn hostile_input_is_matched_as_words_without_error(store: &dyn SearchIndex) {
    let tenant = super::tenant("hostile_input_is_matched_as_words_without_error");
    index(
        store,
        &tenant,
        vec![
            SearchDocument {
                message: "status:failed on web01".into(),
                ..log("failed", 1_000, "disk is full")
            },
            device("web01", 2_000, "web01"),
        ],
    )
    .await;
    refresh(store).await;
    let known = strings(&["failed", "web01"]);

    // Unbalanced quotes are ignored: the words still have to match.
    for text in [
        "\"disk full",
        "disk full\"",
        "-\"zebra disk full",
        "\"\"\"disk full",
    ] {
        assert_eq!(
            matching_ids(store, &tenant, text).await,
            strings(&["failed"]),
            "searching {text:?}"
        );
    }
    // `field:value` is text, not a field selector.
    assert_eq!(
        matching_ids(store, &tenant, "status:failed").await,
        strings(&["failed"])
    );
    assert!(
        matching_ids(store, &tenant, "hostname:web01")
            .await
            .is_empty()
    );

    let mut pasted_log_line = String::new();
    while pasted_log_line.len() < 10 * 1024 {
        pasted_log_line.push_str("disk is full ");
    }
    let many_distinct_words: String = (0..2_000).map(|n| format!("w{n} ")).collect();
    let one_enormous_word = "x".repeat(10 * 1024);
    assert!(many_distinct_words.len() >= 10 * 1024);
    assert_eq!(
        matching_ids(store, &tenant, &pasted_log_line).await,
        strings(&["failed"])
    );
    assert!(
        matching_ids(store, &tenant, &many_distinct_words)
            .await
            .is_empty()
    );

    let hostile = [
        "*",
        "?",
        "AND OR NOT",
        "disk AND full OR NOT web01",
        "-",
        "--",
        "- -",
        "\"",
        "\"\"",
        "-\"\"",
        "(disk OR full) && !web01 || +x ~2 ^3 [a TO z] {a TO z} \\ / :",
        "summary:* message:[* TO *]",
        "ünïcödé 💾 \u{0} \u{1f} \t\n",
        one_enormous_word.as_str(),
    ];
    for text in hostile {
        let found = matching_ids(store, &tenant, text).await;
        assert!(
            found.iter().all(|id| known.contains(id)),
            "searching {text:?} found {found:?}"
        );
    }
}

pub async fn a_limit_outside_the_allowed_range_is_rejected(store: &dyn SearchIndex) {
    let tenant = super::tenant("a_limit_outside_the_allowed_range_is_rejected");
    index(store, &tenant, vec![log("only", 1_000, "kestrel")]).await;
    refresh(store).await;

    for limit in [0, MAX_HITS + 1, usize::MAX] {
        let query = SearchQuery {
            limit,
            ..words("kestrel")
        };
        match store.search(&tenant, &query).await {
            Err(SearchError::InvalidQuery(message)) => {
                assert!(
                    message.contains("limit"),
                    "the message should name the limit: {message}"
                );
            }
            other => panic!("limit {limit} should be rejected, got {other:?}"),
        }
    }
    let widest = SearchQuery {
        limit: MAX_HITS,
        ..words("kestrel")
    };
    assert_eq!(
        ranked_ids(store, &tenant, &widest).await,
        strings(&["only"])
    );
}

pub async fn documents_are_visible_after_refresh(store: &dyn SearchIndex) {
    let tenant = super::tenant("documents_are_visible_after_refresh");
    for batch in 0..3 {
        let documents = (0..40)
            .map(|n| {
                let number = batch * 40 + n;
                log(&format!("doc-{number:03}"), number, "kestrel")
            })
            .collect();
        index(store, &tenant, documents).await;
    }
    refresh(store).await;

    let query = SearchQuery {
        limit: 500,
        ..words("kestrel")
    };
    let ids = ranked_ids(store, &tenant, &query).await;
    let expected: Vec<String> = (0..120).rev().map(|n| format!("doc-{n:03}")).collect();
    assert_eq!(ids, expected);

    // A refresh with nothing pending is fine, and changes nothing.
    refresh(store).await;
    assert_eq!(ranked_ids(store, &tenant, &query).await.len(), 120);
}

pub async fn empty_batches_are_harmless(store: &dyn SearchIndex) {
    let tenant = super::tenant("empty_batches_are_harmless");
    index(store, &tenant, vec![log("kept", 1_000, "kestrel")]).await;
    index(store, &tenant, Vec::new()).await;
    if let Err(error) = store.delete(&tenant, DocumentKind::Log, Vec::new()).await {
        panic!("deleting nothing failed: {error}");
    }
    refresh(store).await;
    assert_eq!(
        matching_ids(store, &tenant, "kestrel").await,
        strings(&["kept"])
    );
}

pub async fn empty_and_overlong_ids_are_refused_whole(store: &dyn SearchIndex) {
    let tenant = super::tenant("empty_and_overlong_ids_are_refused_whole");
    let longest = "x".repeat(crate::search::MAX_ID_BYTES);
    index(store, &tenant, vec![log(&longest, 1_000, "osprey")]).await;
    for bad_id in [String::new(), "x".repeat(crate::search::MAX_ID_BYTES + 1)] {
        let batch = vec![log("fine", 2_000, "osprey"), log(&bad_id, 3_000, "osprey")];
        match store.index(&tenant, batch).await {
            Err(crate::error::SearchError::InvalidDocument(why)) => {
                assert!(why.contains("ids must be"), "{why}")
            }
            other => panic!(
                "an id of {} bytes must be refused, got {other:?}",
                bad_id.len()
            ),
        }
    }
    refresh(store).await;
    assert_eq!(
        matching_ids(store, &tenant, "osprey").await,
        strings(&[longest.as_str()]),
        "a refused batch indexes nothing, not even its good documents"
    );
}
