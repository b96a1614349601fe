//! Management (OpenFrame's management service): what runs beside the request handlers to keep the
//! appliance's moving parts alive. So far: the supervised `nats-server` ([`nats`]).

pub mod nats;
