//! The technician GraphQL API at `/api/graphql` (OpenFrame's API service schema): Relay
//! connections over the tenant's devices, organizations and unified log, `node`/`nodes`, and
//! `me`.
//!
//! Every resolver acts for the administrator the gateway verified ([`Admin`] in the request's
//! data) and reads only that tenant. Errors carry `extensions.code` from the REST error table
//! (`invalid_input`, `not_found`, …), and the message names the argument at fault. Queries are
//! limited in depth and complexity (`[api]` in the config); introspection can be turned off.

pub mod audit;
pub mod devices;
pub mod events;
pub mod incidents;
pub mod live;
pub mod logs;
pub mod organizations;
pub mod relay;
pub mod schedules;
pub mod scripts;
pub mod tags;
pub mod tools;

use async_graphql::resolver_utils::EnumType;
use async_graphql::{
    Context, ErrorExtensions, ID, Interface, MergedObject, Object, Schema, SimpleObject,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::config::ApiSection;
use crate::error::ApiError;
use crate::gateway::auth::Admin;
use crate::startup::AppState;

pub use devices::Device;
pub use organizations::Customer;

pub type GqlResult<T> = async_graphql::Result<T>;

/// The schema type, built once at start.
pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// An `invalid_input` error whose message starts with the argument at fault.
pub fn invalid(message: impl Into<String>) -> async_graphql::Error {
    gql_error(ApiError::InvalidInput(message.into()))
}

/// An error of the REST table as a GraphQL error: same code, same message (internal details
/// stay in the log, as for REST).
pub fn gql_error(error: ApiError) -> async_graphql::Error {
    let (_, code) = error.status_and_code();
    let message = match &error {
        ApiError::Unexpected(inner) => {
            tracing::error!(error = %inner, "a GraphQL resolver failed");
            "something went wrong on our side; it has been logged".to_owned()
        }
        ApiError::StoreUnavailable(detail) => {
            tracing::warn!(%detail, "a GraphQL resolver found a store unavailable");
            "a store is unavailable; try again shortly".to_owned()
        }
        other => other.to_string(),
    };
    async_graphql::Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}

impl From<crate::inventory::InventoryError> for ApiError {
    fn from(error: crate::inventory::InventoryError) -> Self {
        use crate::inventory::InventoryError;
        match error {
            InventoryError::Invalid(invalid) => ApiError::InvalidInput(invalid.to_string()),
            InventoryError::NotFound(what) => ApiError::NotFound(what),
            InventoryError::Unavailable(detail) => ApiError::StoreUnavailable(detail),
        }
    }
}

/// The GraphQL name of an enum value (`PENDING_DELETION`), as stored.
pub(crate) fn enum_name<T: EnumType>(value: T) -> &'static str {
    T::items()
        .iter()
        .find(|item| item.value == value)
        .map_or("", |item| item.name)
}

/// The enum value a stored name stands for; `what` names the field in the error.
pub(crate) fn enum_of<T: EnumType>(what: &str, name: &str) -> GqlResult<T> {
    T::items()
        .iter()
        .find(|item| item.name == name)
        .map(|item| item.value)
        .ok_or_else(|| {
            gql_error(ApiError::Unexpected(anyhow::anyhow!(
                "a stored {what} {name:?} is not a value of its GraphQL enum"
            )))
        })
}

/// What every resolver needs: the appliance and who is asking.
pub(crate) struct Request<'a> {
    pub state: &'a AppState,
    pub admin: &'a Admin,
}

pub(crate) fn request<'a>(ctx: &Context<'a>) -> Request<'a> {
    // Both are put in every request's data by the handler below; a schema executed without
    // them is a programming error caught by every test.
    Request {
        state: ctx.data_unchecked::<AppState>(),
        admin: ctx.data_unchecked::<Admin>(),
    }
}

/// OpenFrame's `Node` interface.
#[derive(Interface, Debug)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Machine(Device),
    Organization(Customer),
    Tag(tags::TagNode),
    Event(events::EventNode),
    IntegratedTool(tools::IntegratedTool),
    Script(scripts::ScriptNode),
    ScriptExecution(scripts::ExecutionNode),
    ScriptSchedule(schedules::ScheduleNode),
    ScheduleRun(schedules::RunNode),
}

#[derive(MergedObject, Default, Debug)]
pub struct Query(
    NodeQuery,
    MeQuery,
    devices::DeviceQuery,
    organizations::OrganizationQuery,
    logs::LogQuery,
    tags::TagQuery,
    events::EventQuery,
    tools::ToolQuery,
    audit::AuditQuery,
    scripts::ScriptQuery,
    schedules::ScheduleQuery,
    incidents::IncidentQuery,
);

#[derive(MergedObject, Default, Debug)]
pub struct Mutation(
    devices::DeviceMutation,
    tags::TagMutation,
    events::EventMutation,
    scripts::ScriptMutation,
    schedules::ScheduleMutation,
    incidents::IncidentMutation,
);

#[derive(async_graphql::MergedSubscription, Default, Debug)]
pub struct Subscription(live::LiveSubscription, incidents::NotificationSubscription);

/// The most ids `nodes` takes at once.
const MAX_NODES: usize = 100;

#[derive(Default, Debug)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by its global id; null when it does not exist (or is another tenant's).
    async fn node(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Node>> {
        find_node(ctx, "id", &id).await
    }

    /// Several objects by global id, in the order asked (null for those not found).
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> GqlResult<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(invalid(format!(
                "ids: at most {MAX_NODES} at once, got {}",
                ids.len()
            )));
        }
        let mut found = Vec::with_capacity(ids.len());
        for id in &ids {
            found.push(find_node(ctx, "ids", id).await?);
        }
        Ok(found)
    }
}

async fn find_node(ctx: &Context<'_>, argument: &str, id: &ID) -> GqlResult<Option<Node>> {
    let (kind, local) = relay::parse_global_id(argument, id)?;
    Ok(match kind.as_str() {
        "Machine" => devices::by_machine_id(ctx, &local)
            .await?
            .map(Node::Machine),
        "Organization" => organizations::by_organization_id(ctx, &local)
            .await?
            .map(Node::Organization),
        "Tag" => tags::by_tag_id(ctx, &local).await?.map(Node::Tag),
        "Event" => events::by_event_id(ctx, &local).await?.map(Node::Event),
        "IntegratedTool" => tools::by_tool_id(ctx, &local)
            .await?
            .map(Node::IntegratedTool),
        "Script" => scripts::by_script_id(ctx, &local).await?.map(Node::Script),
        "ScriptExecution" => scripts::by_execution_id(ctx, &local)
            .await?
            .map(Node::ScriptExecution),
        "ScriptSchedule" => schedules::by_schedule_id(ctx, &local)
            .await?
            .map(Node::ScriptSchedule),
        "ScheduleRun" => schedules::by_run_id(ctx, &local)
            .await?
            .map(Node::ScheduleRun),
        _ => None,
    })
}

/// The signed-in technician (`me`).
#[derive(SimpleObject, Debug)]
pub struct Me {
    pub id: ID,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub tenant_id: String,
}

#[derive(Default, Debug)]
pub struct MeQuery;

#[Object]
impl MeQuery {
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        let Request { state, admin } = request(ctx);
        let display_name = crate::api::display_name(state, admin)
            .await
            .map_err(gql_error)?;
        let roles = crate::api::roles(admin)
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(Me {
            id: ID(admin.user_id.clone()),
            email: admin.email.clone(),
            display_name,
            roles,
            tenant_id: admin.tenant.as_str().to_owned(),
        })
    }
}

/// Builds the schema with the configured limits.
pub fn schema(config: &ApiSection) -> ApiSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(usize::try_from(config.max_depth).unwrap_or(usize::MAX))
    .limit_complexity(usize::try_from(config.max_complexity).unwrap_or(usize::MAX));
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The GraphQL routes (ADMIN only, checked by the gateway for all of `/api`).
pub fn router(state: &AppState) -> Router<AppState> {
    let schema = schema(&state.config.api);
    let graphiql = state.config.api.graphiql;
    let socket_schema = schema.clone();
    Router::new().route(
        "/api/graphql",
        get(
            move |State(state): State<AppState>, admin: Admin, request: axum::extract::Request| {
                page_or_socket(socket_schema.clone(), graphiql, state, admin, request)
            },
        )
        .post(
            move |State(state): State<AppState>, admin: Admin, request: axum::body::Bytes| {
                execute(schema.clone(), state, admin, request)
            },
        ),
    )
}

/// A WebSocket upgrade gets subscriptions; a plain GET the GraphiQL page (when on).
async fn page_or_socket(
    schema: ApiSchema,
    graphiql: bool,
    state: AppState,
    admin: Admin,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    if !parts.headers.contains_key(header::UPGRADE) {
        return page(graphiql, admin).await;
    }
    match <axum::extract::ws::WebSocketUpgrade as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => live::upgrade(schema, state, admin, &parts.headers, upgrade).await,
        Err(rejection) => rejection.into_response(),
    }
}

async fn page(enabled: bool, _admin: Admin) -> Response {
    if !enabled {
        return ApiError::NotFound(
            "GraphiQL is off on this appliance ([api] graphiql = true turns it on); POST queries to /api/graphql"
                .into(),
        )
        .into_response();
    }
    let html = async_graphql::http::GraphiQLSource::build()
        .endpoint("/api/graphql")
        .finish();
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            // GraphiQL loads its scripts and styles from a CDN and runs inline code.
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' https://unpkg.com; style-src 'self' 'unsafe-inline' https://unpkg.com; frame-ancestors 'none'",
            ),
        )],
        Html(html),
    )
        .into_response()
}

async fn execute(
    schema: ApiSchema,
    state: AppState,
    admin: Admin,
    body: axum::body::Bytes,
) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return ApiError::InvalidInput(format!(
                "the body is not a GraphQL request ({{\"query\": \"…\", \"variables\": {{…}}}}): {error}"
            ))
            .into_response();
        }
    };
    // The engine answers a switched-off introspection with null; say why instead.
    if !state.config.api.introspection && asks_introspection(&request.query) {
        let code = ApiError::Forbidden(String::new()).status_and_code().1;
        return axum::Json(serde_json::json!({
            "data": null,
            "errors": [{
                "message": "introspection is turned off on this appliance ([api] introspection = false)",
                "extensions": {"code": code},
            }],
        }))
        .into_response();
    }
    let response = schema.execute(request.data(state).data(admin)).await;
    let mut body = match serde_json::to_value(&response) {
        Ok(body) => body,
        Err(error) => return ApiError::Unexpected(error.into()).into_response(),
    };
    // Parse and validation errors (unknown fields, wrong types, limits) come from the engine
    // without a code: they are the client's to fix.
    if let Some(errors) = body
        .get_mut("errors")
        .and_then(|errors| errors.as_array_mut())
    {
        for error in errors {
            let extensions = error.as_object_mut().map(|error| {
                error
                    .entry("extensions")
                    .or_insert_with(|| serde_json::json!({}))
            });
            if let Some(extensions) = extensions.and_then(|value| value.as_object_mut()) {
                extensions
                    .entry("code")
                    .or_insert_with(|| serde_json::json!("invalid_input"));
            }
        }
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Whether a query selects `__schema` or `__type` at its root (directly or through fragments).
/// A query that does not parse is left to the engine, which explains the syntax error.
fn asks_introspection(query: &str) -> bool {
    use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
    fn selects(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
        // Fragments may spread each other; a cycle is the engine's error to report.
        depth < 32
            && set.items.iter().any(|item| match &item.node {
                Selection::Field(field) => {
                    matches!(field.node.name.node.as_str(), "__schema" | "__type")
                }
                Selection::InlineFragment(fragment) => {
                    selects(document, &fragment.node.selection_set.node, depth + 1)
                }
                Selection::FragmentSpread(spread) => document
                    .fragments
                    .get(&spread.node.fragment_name.node)
                    .is_some_and(|fragment| {
                        selects(document, &fragment.node.selection_set.node, depth + 1)
                    }),
            })
    }
    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return false;
    };
    document
        .operations
        .iter()
        .any(|(_, operation)| selects(&document, &operation.node.selection_set.node, 0))
}
