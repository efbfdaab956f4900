//! The RBAC rules in `rbac::RULES` against the traffic of every scenario: each request must be
//! allowed, and each granted permission must be used by some scenario (or be justified in
//! `rbac::UNEXERCISED`), so the list is derived from behaviour rather than kept by hand.

use std::collections::BTreeSet;

use chatcluster_operator::rbac::{RULES, UNEXERCISED, allows, permission_for};

use super::*;

#[tokio::test]
async fn every_request_is_allowed_and_every_rule_is_used() {
    let mut log = Vec::new();
    log.extend(scenarios::first_reconcile().await);
    log.extend(scenarios::replica_change().await);
    log.extend(failures::invalid_spec().await);
    log.extend(failures::api_error(500, "kube_server_error").await);
    log.extend(scenarios::observed_generation().await);
    log.extend(scenarios::existing_secret().await);
    log.extend(failures::crd_check().await);
    log.extend(scenarios::becomes_ready().await);
    log.extend(leader::acquire_and_renew().await);
    log.extend(leader::standby_then_takeover().await);

    let mut used = BTreeSet::new();
    for r in &log {
        let needed = permission_for(&r.method, &r.path, &r.query_string(), r.is_apply());
        assert!(
            !needed.is_empty(),
            "cannot map {} to a permission",
            r.line()
        );
        for (group, resource, verb) in needed {
            assert!(
                allows(&group, &resource, &verb),
                "{} needs {verb} on {group}/{resource}, missing from rbac::RULES",
                r.line()
            );
            used.insert((group, resource, verb));
        }
    }
    for rule in RULES {
        for resource in rule.resources {
            for verb in rule.verbs {
                let key = (
                    rule.api_group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                );
                let justified = UNEXERCISED
                    .iter()
                    .any(|(g, r, v, _)| (*g, *r, *v) == (rule.api_group, *resource, *verb));
                assert!(
                    used.contains(&key) || justified,
                    "rbac::RULES grants {verb} on {}/{resource} but no scenario uses it: remove it or justify it in UNEXERCISED",
                    rule.api_group
                );
            }
        }
    }
}
