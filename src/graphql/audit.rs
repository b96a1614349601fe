//! The audit trail in GraphQL: `auditEvents` (newest first), and [`record`], which every
//! mutation calls after it changed something.

use async_graphql::{Context, InputObject, Json, Object, SimpleObject};

use super::relay::{self, PageArgs, PageInfo};
use super::{GqlResult, gql_error, invalid, request};
use crate::audit::{Actor, AuditChange, AuditFilter, AuditRecord};
use crate::error::ApiError;

/// Records a mutation's change. A record that cannot be stored is logged as an error; the
/// change itself has been made and is not undone.
pub(super) async fn record(ctx: &Context<'_>, action: &str, change: AuditChange) {
    let request = request(ctx);
    let actor = Actor {
        tenant: request.admin.tenant.clone(),
        user_id: request.admin.user_id.clone(),
        email: request.admin.email.clone(),
    };
    if let Err(error) = request
        .state
        .audit
        .record(&actor, action, change, 200)
        .await
    {
        tracing::error!(%error, action, actor = %actor.user_id, "an audit record could not be stored");
    }
}

/// An object as the audit trail keeps it.
pub(super) fn snapshot(value: &impl serde::Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// One change (type `AuditEvent`).
#[derive(Debug)]
pub struct AuditEvent(AuditRecord);

#[Object]
impl AuditEvent {
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// When (RFC 3339).
    async fn at(&self) -> String {
        crate::api::iso(self.0.at)
    }
    async fn actor_id(&self) -> &str {
        &self.0.actor_id
    }
    async fn actor_email(&self) -> &str {
        &self.0.actor_email
    }
    /// The REST route (`PATCH /api/organizations/{id}/status`) or the mutation (`createTag`).
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn target_type(&self) -> &str {
        &self.0.target_type
    }
    async fn target_id(&self) -> &str {
        &self.0.target_id
    }
    async fn before(&self) -> Option<Json<serde_json::Value>> {
        self.0.before.clone().map(Json)
    }
    async fn after(&self) -> Option<Json<serde_json::Value>> {
        self.0.after.clone().map(Json)
    }
    async fn status(&self) -> i32 {
        i32::from(self.0.status)
    }
}

#[derive(SimpleObject, Debug)]
pub struct AuditEdge {
    pub node: AuditEvent,
    pub cursor: String,
}

/// Newest first, paged forward (`first`/`after`).
#[derive(SimpleObject, Debug)]
pub struct AuditConnection {
    pub edges: Vec<AuditEdge>,
    pub page_info: PageInfo,
}

#[derive(InputObject, Default, Debug, Clone)]
pub struct AuditFilterInput {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

#[derive(Default, Debug)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The tenant's audit trail, newest first. A filtered page reads at most 10,000 records;
    /// `pageInfo.hasNextPage` then says where to continue.
    #[graphql(complexity = "PageArgs::size(first, None) * child_complexity + 1")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilterInput>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<AuditConnection> {
        let args = PageArgs::new(first, after, None, None)?;
        let after = args
            .after
            .as_deref()
            .map(|cursor| relay::decode_cursor("after", cursor))
            .transpose()?;
        if after.as_ref().is_some_and(|key| !is_record_id(key)) {
            return Err(invalid("after: not a cursor this list returned"));
        }
        let filter = filter.unwrap_or_default();
        let filter = AuditFilter {
            actor_id: filter.actor_id,
            action: filter.action,
            target_type: filter.target_type,
            target_id: filter.target_id,
        };
        let limit = usize::try_from(args.first.unwrap_or(relay::DEFAULT_PAGE)).unwrap_or(20);
        let request = request(ctx);
        let page = request
            .state
            .audit
            .page(&request.admin.tenant, &filter, after.as_deref(), limit)
            .await
            .map_err(|error| gql_error(ApiError::StoreUnavailable(error.to_string())))?;
        let edges: Vec<AuditEdge> = page
            .records
            .into_iter()
            .map(|record| AuditEdge {
                cursor: relay::encode_cursor(&record.id),
                node: AuditEvent(record),
            })
            .collect();
        Ok(AuditConnection {
            page_info: PageInfo {
                has_next_page: page.next.is_some(),
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|edge| edge.cursor.clone()),
                end_cursor: page
                    .next
                    .map(|next| relay::encode_cursor(&next))
                    .or_else(|| edges.last().map(|edge| edge.cursor.clone())),
            },
            edges,
        })
    }
}

/// The shape of a record id (`{13 digits}-{uuid}`), so a forged cursor is refused as input.
pub(crate) fn is_record_id(key: &str) -> bool {
    key.len() == 13 + 1 + 36
        && key.as_bytes()[..13].iter().all(u8::is_ascii_digit)
        && key.as_bytes()[13] == b'-'
}
