//! Organizations (OpenFrame's customers): `organizations`, `organization` and
//! `organizationByOrganizationId`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::devices::SortDirection;
use super::relay::{self, PageArgs, PageInfo};
use super::{GqlResult, gql_error, invalid, request};
use crate::inventory::Organization;

/// A customer of the MSP as GraphQL shows it (type `Organization`).
#[derive(Debug, Clone)]
pub struct Customer(Organization);

impl From<Organization> for Customer {
    fn from(organization: Organization) -> Self {
        Customer(organization)
    }
}

#[Object(name = "Organization")]
impl Customer {
    /// The global id (`Organization:<organizationId>`).
    pub async fn id(&self) -> ID {
        relay::global_id("Organization", &self.0.organization_id)
    }
    /// The id devices and logs refer to.
    async fn organization_id(&self) -> &str {
        &self.0.organization_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// `ACTIVE` or `ARCHIVED`.
    async fn status(&self) -> &str {
        &self.0.status
    }
    async fn category(&self) -> Option<&str> {
        self.0.category.as_deref()
    }
    async fn number_of_employees(&self) -> Option<u32> {
        self.0.number_of_employees
    }
    async fn website_url(&self) -> Option<&str> {
        self.0.website_url.as_deref()
    }
    async fn notes(&self) -> Option<&str> {
        self.0.notes.as_deref()
    }
    /// A decimal, as text.
    async fn monthly_revenue(&self) -> Option<&str> {
        self.0.monthly_revenue.as_deref()
    }
    async fn contract_start_date(&self) -> Option<&str> {
        self.0.contract_start_date.as_deref()
    }
    async fn contract_end_date(&self) -> Option<&str> {
        self.0.contract_end_date.as_deref()
    }
    async fn contact_information(&self) -> Option<async_graphql::Json<serde_json::Value>> {
        self.0.contact_information.clone().map(async_graphql::Json)
    }
    async fn created_at(&self) -> Option<String> {
        self.0.created_at.map(crate::api::iso)
    }
    async fn updated_at(&self) -> Option<String> {
        self.0.updated_at.map(crate::api::iso)
    }
}

#[derive(SimpleObject, Debug)]
pub struct OrganizationEdge {
    pub node: Customer,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct OrganizationConnection {
    pub edges: Vec<OrganizationEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

/// OpenFrame's `OrganizationFilterInput`, as far as this appliance records organizations.
#[derive(InputObject, Default, Debug, Clone)]
pub struct OrganizationFilterInput {
    /// `ACTIVE` (the default), `ARCHIVED` or `DELETED`.
    pub status: Option<String>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrganizationSortField {
    Name,
    /// When a device of the organization was last heard from.
    LastActivity,
}

#[derive(InputObject, Debug, Clone)]
pub struct OrganizationSortInput {
    pub field: OrganizationSortField,
    pub direction: SortDirection,
}

const STATUSES: [&str; 3] = ["ACTIVE", "ARCHIVED", "DELETED"];

#[derive(Default, Debug)]
pub struct OrganizationQuery;

#[Object]
impl OrganizationQuery {
    /// The tenant's organizations, searched by name, sorted (default: name) and paged.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrganizationFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        search: Option<String>,
        order_by: Option<OrganizationSortInput>,
    ) -> GqlResult<OrganizationConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let status = filter.and_then(|filter| filter.status);
        if let Some(status) = &status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(invalid(format!(
                "filter.status: {status:?} is not an organization status (one of {})",
                STATUSES.join(", ")
            )));
        }
        let search = relay::search_text(search)?;
        let (field, ascending) = order_by.map_or((OrganizationSortField::Name, true), |order| {
            (order.field, order.direction == SortDirection::Asc)
        });
        let request = request(ctx);
        request
            .state
            .inventory
            .view(&request.admin.tenant, |machines, organizations| {
                let mut last_activity = std::collections::HashMap::<&str, i64>::new();
                if field == OrganizationSortField::LastActivity {
                    for machine in machines.values() {
                        if let (Some(org), Some(seen)) =
                            (machine.organization_id.as_deref(), machine.last_seen)
                        {
                            let latest = last_activity.entry(org).or_insert(seen);
                            *latest = (*latest).max(seen);
                        }
                    }
                }
                let activity = |id: &str| last_activity.get(id).copied();
                let mut sorted: Vec<(String, &Organization)> = organizations
                    .values()
                    .filter(|org| org.status == status.as_deref().unwrap_or("ACTIVE"))
                    .filter(|org| {
                        search
                            .as_ref()
                            .is_none_or(|text| org.name.to_lowercase().contains(text))
                    })
                    .map(|org| {
                        let key = match field {
                            OrganizationSortField::Name => {
                                relay::text_key(&org.name, &org.organization_id)
                            }
                            OrganizationSortField::LastActivity => relay::number_key(
                                activity(&org.organization_id),
                                &org.organization_id,
                            ),
                        };
                        (key, org)
                    })
                    .collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if !ascending {
                    sorted.reverse();
                }
                relay::paginate(sorted, ascending, &args).map(|page| OrganizationConnection {
                    edges: page
                        .rows
                        .into_iter()
                        .map(|(cursor, org)| OrganizationEdge {
                            node: Customer(org.clone()),
                            cursor,
                        })
                        .collect(),
                    page_info: page.info,
                    filtered_count: page.filtered_count,
                })
            })
            .await
            .map_err(|error| gql_error(error.into()))?
    }

    /// One organization by its global id.
    async fn organization(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Customer>> {
        match relay::local_id("id", &id, "Organization")? {
            Some(organization_id) => by_organization_id(ctx, &organization_id).await,
            None => Ok(None),
        }
    }

    async fn organization_by_organization_id(
        &self,
        ctx: &Context<'_>,
        organization_id: String,
    ) -> GqlResult<Option<Customer>> {
        by_organization_id(ctx, &organization_id).await
    }
}

pub(super) async fn by_organization_id(
    ctx: &Context<'_>,
    organization_id: &str,
) -> GqlResult<Option<Customer>> {
    let request = request(ctx);
    request
        .state
        .inventory
        .view(&request.admin.tenant, |_, organizations| {
            organizations.get(organization_id).cloned().map(Customer)
        })
        .await
        .map_err(|error| gql_error(error.into()))
}
