//! Generic events: `events`, `eventById`, `eventFilters`, `createEvent` and `updateEvent`
//! (OpenFrame's `type Event { id userId timestamp type data }`).

use std::collections::BTreeMap;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::audit::{record, snapshot};
use super::devices::{DeviceFilterOption, SortDirection};
use super::logs::{DAY_MS, parse_day};
use super::relay::{self, PageArgs, PageInfo};
use super::{GqlResult, gql_error, invalid, request};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::events::{Event, EventInput};

/// An event as GraphQL shows it (type `Event`).
#[derive(Debug, Clone)]
pub struct EventNode(Event);

#[Object(name = "Event")]
impl EventNode {
    /// The global id (`Event:<eventId>`).
    pub async fn id(&self) -> ID {
        relay::global_id("Event", &self.0.id)
    }
    async fn event_id(&self) -> &str {
        &self.0.id
    }
    async fn user_id(&self) -> &str {
        &self.0.user_id
    }
    /// When it happened (RFC 3339).
    async fn timestamp(&self) -> String {
        crate::api::iso(self.0.timestamp)
    }
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn data(&self) -> &str {
        &self.0.data
    }
    async fn updated_at(&self) -> String {
        crate::api::iso(self.0.updated_at)
    }
}

#[derive(SimpleObject, Debug)]
pub struct EventEdge {
    pub node: EventNode,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct EventConnection {
    pub edges: Vec<EventEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

/// OpenFrame's `EventFilterInput`; dates are UTC days (`yyyy-MM-dd`), both inclusive.
#[derive(InputObject, Default, Debug, Clone)]
pub struct EventFilterInput {
    pub user_ids: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventSortField {
    Timestamp,
    Type,
    UserId,
}

#[derive(InputObject, Debug, Clone)]
pub struct EventSortInput {
    pub field: EventSortField,
    pub direction: Option<SortDirection>,
}

/// The facets of the filtered event list, with counts.
#[derive(SimpleObject, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventFilters {
    pub user_ids: Vec<DeviceFilterOption>,
    pub event_types: Vec<DeviceFilterOption>,
    pub filtered_count: i32,
}

#[derive(InputObject, Debug, Clone)]
pub struct CreateEventInput {
    /// Defaults to the signed-in technician.
    pub user_id: Option<String>,
    #[graphql(name = "type")]
    pub event_type: String,
    pub data: Option<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct UpdateEventInput {
    pub user_id: Option<String>,
    #[graphql(name = "type")]
    pub event_type: Option<String>,
    pub data: Option<String>,
}

/// A checked filter and search.
pub(crate) struct Selection {
    user_ids: Option<Vec<String>>,
    event_types: Option<Vec<String>>,
    from: Option<i64>,
    to: Option<i64>,
    search: Option<String>,
}

impl Selection {
    pub(crate) fn new(
        filter: Option<EventFilterInput>,
        search: Option<String>,
    ) -> GqlResult<Selection> {
        let filter = filter.unwrap_or_default();
        let from = filter
            .start_date
            .as_deref()
            .map(|day| parse_day("filter.startDate", day))
            .transpose()?;
        let to = filter
            .end_date
            .as_deref()
            .map(|day| parse_day("filter.endDate", day).map(|start| start + DAY_MS))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(invalid(
                "filter.endDate: must not be before filter.startDate",
            ));
        }
        let search = relay::search_text(search)?;
        Ok(Selection {
            user_ids: filter.user_ids,
            event_types: filter.event_types,
            from,
            to,
            search,
        })
    }

    fn keeps(&self, event: &Event) -> bool {
        self.user_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&event.user_id))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
            && self.from.is_none_or(|from| event.timestamp >= from)
            && self.to.is_none_or(|to| event.timestamp < to)
            && self.search.as_ref().is_none_or(|text| {
                event.event_type.to_lowercase().contains(text)
                    || event.data.to_lowercase().contains(text)
                    || event.user_id.to_lowercase().contains(text)
            })
    }
}

fn sort_key(event: &Event, field: EventSortField) -> String {
    match field {
        EventSortField::Timestamp => relay::number_key(Some(event.timestamp), &event.id),
        EventSortField::Type => relay::text_key(&event.event_type, &event.id),
        EventSortField::UserId => relay::text_key(&event.user_id, &event.id),
    }
}

fn event_id(argument: &str, id: &ID) -> GqlResult<Option<String>> {
    relay::local_id(argument, id, "Event")
}

pub(super) async fn by_event_id(ctx: &Context<'_>, id: &str) -> GqlResult<Option<EventNode>> {
    let request = request(ctx);
    Ok(request
        .state
        .events
        .get(&request.admin.tenant, id)
        .await
        .map_err(|error| gql_error(error.into()))?
        .map(EventNode))
}

#[derive(Default, Debug)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// The tenant's events, filtered, searched (type, data, user), sorted (default: time,
    /// oldest first, as OpenFrame) and paged.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        search: Option<String>,
        sort: Option<EventSortInput>,
    ) -> GqlResult<EventConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let selection = Selection::new(filter, search)?;
        let field = sort
            .as_ref()
            .map_or(EventSortField::Timestamp, |sort| sort.field);
        let ascending = sort
            .and_then(|sort| sort.direction)
            .unwrap_or(SortDirection::Asc)
            == SortDirection::Asc;
        let request = request(ctx);
        let page = page_of_events(
            request.state,
            &request.admin.tenant,
            &selection,
            field,
            ascending,
            &args,
        )
        .await
        .map_err(gql_error)?;
        Ok(EventConnection {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, event)| EventEdge {
                    node: EventNode(event),
                    cursor,
                })
                .collect(),
            page_info: page.info,
            filtered_count: page.filtered_count,
        })
    }

    /// One event by its global id; null when the tenant has none such.
    async fn event_by_id(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<EventNode>> {
        match event_id("id", &id)? {
            Some(local) => by_event_id(ctx, &local).await,
            None => Ok(None),
        }
    }

    /// User ids and event types of the filtered list, with counts that add up to
    /// `filteredCount`.
    async fn event_filters(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        search: Option<String>,
    ) -> GqlResult<EventFilters> {
        let selection = Selection::new(filter, search)?;
        let request = request(ctx);
        event_facets(request.state, &request.admin.tenant, &selection)
            .await
            .map_err(gql_error)
    }
}

/// One page of events, with the cursors of its rows.
pub(crate) struct EventPage {
    pub rows: Vec<(String, Event)>,
    pub info: PageInfo,
    pub filtered_count: i32,
}

/// The tenant's events `selection` keeps, sorted and paged: GraphQL's `events` and the
/// external API's list.
pub(crate) async fn page_of_events(
    state: &crate::startup::AppState,
    tenant: &openframe_storage::TenantId,
    selection: &Selection,
    field: EventSortField,
    ascending: bool,
    args: &PageArgs,
) -> Result<EventPage, ApiError> {
    state
        .events
        .view(tenant, |events| {
            let mut sorted: Vec<(String, &Event)> = events
                .filter(|event| selection.keeps(event))
                .map(|event| (sort_key(event, field), event))
                .collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if !ascending {
                sorted.reverse();
            }
            relay::paginate(sorted, ascending, args)
                .map(|page| EventPage {
                    rows: page
                        .rows
                        .into_iter()
                        .map(|(cursor, event)| (cursor, event.clone()))
                        .collect(),
                    info: page.info,
                    filtered_count: page.filtered_count,
                })
                .map_err(|error| ApiError::InvalidInput(error.message))
        })
        .await?
}

/// User ids and event types of the events `selection` keeps, with counts that add up to
/// `filteredCount`.
pub(crate) async fn event_facets(
    state: &crate::startup::AppState,
    tenant: &openframe_storage::TenantId,
    selection: &Selection,
) -> Result<EventFilters, ApiError> {
    Ok(state
        .events
        .view(tenant, |events| {
            let mut users = BTreeMap::<String, i32>::new();
            let mut types = BTreeMap::<String, i32>::new();
            let mut filtered = 0;
            for event in events.filter(|event| selection.keeps(event)) {
                filtered += 1;
                *users.entry(event.user_id.clone()).or_default() += 1;
                *types.entry(event.event_type.clone()).or_default() += 1;
            }
            let options = DeviceFilterOption::counted;
            EventFilters {
                user_ids: options(users),
                event_types: options(types),
                filtered_count: filtered,
            }
        })
        .await?)
}

#[derive(Default, Debug)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    /// Records an event at the current time.
    async fn create_event(
        &self,
        ctx: &Context<'_>,
        input: CreateEventInput,
    ) -> GqlResult<EventNode> {
        let request = request(ctx);
        let event = request
            .state
            .events
            .create(
                &request.admin.tenant,
                &request.admin.user_id,
                EventInput {
                    event_type: Some(input.event_type),
                    data: input.data,
                    user_id: input.user_id,
                },
            )
            .await
            .map_err(|error| gql_error(error.into()))?;
        record(
            ctx,
            "createEvent",
            AuditChange {
                target_type: "Event",
                target_id: event.id.clone(),
                before: None,
                after: snapshot(&event),
            },
        )
        .await;
        Ok(EventNode(event))
    }

    /// Changes an event's type, data or user; the fields left out stay.
    async fn update_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateEventInput,
    ) -> GqlResult<EventNode> {
        let local = event_id("id", &id)?.ok_or_else(|| {
            gql_error(ApiError::NotFound(format!(
                "id: no event {:?}",
                id.as_str()
            )))
        })?;
        let request = request(ctx);
        let before = request
            .state
            .events
            .get(&request.admin.tenant, &local)
            .await
            .map_err(|error| gql_error(error.into()))?;
        let event = request
            .state
            .events
            .update(
                &request.admin.tenant,
                &local,
                EventInput {
                    event_type: input.event_type,
                    data: input.data,
                    user_id: input.user_id,
                },
            )
            .await
            .map_err(|error| gql_error(error.into()))?;
        if before.as_ref() != Some(&event) {
            record(
                ctx,
                "updateEvent",
                AuditChange {
                    target_type: "Event",
                    target_id: local,
                    before: before.as_ref().and_then(snapshot),
                    after: snapshot(&event),
                },
            )
            .await;
        }
        Ok(EventNode(event))
    }
}
