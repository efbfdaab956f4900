//! The chat nodes' headless Service. Its named `ws` port makes the cluster DNS publish
//! `_ws._tcp.<service>.<namespace>.svc.<domain>` SRV records, one per ready pod, which fill the
//! HAProxy `server-template` slots. Not-ready pods (starting or draining) are left out.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::statefulset::{ADMIN_PORT, AGENT_PORT, SIDECAR_HTTP_PORT, WS_PORT, name};
use super::{Component, Ctx};

/// A TCP Service port whose target is the container port of the same name.
pub fn named_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// SRV record name HAProxy resolves.
pub fn srv_name(ctx: &Ctx) -> String {
    format!(
        "_ws._tcp.{}.{}.svc.{}",
        name(ctx),
        ctx.namespace,
        ctx.defaults.cluster_domain
    )
}

/// The headless Service of the chat nodes.
pub fn headless(ctx: &Ctx) -> Service {
    Service {
        metadata: ctx.meta(name(ctx), Component::ChatNode),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(false),
            selector: Some(ctx.selector_labels(Component::ChatNode)),
            ports: Some(vec![
                named_port("ws", WS_PORT),
                named_port("admin", ADMIN_PORT),
                named_port("agent", AGENT_PORT),
                named_port("sidecar-http", SIDECAR_HTTP_PORT),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}
