//! Intake of staged files: a file that has stopped changing is checked against the tenant's
//! agreement, recorded in the ledger with its decision, and only then moved to its folder
//! (processing, or rejected with its reason). Moves a crash interrupted are finished first.

use kube::{Resource, ResourceExt, runtime::events::EventType};
use mongodb::bson::doc;
use mysimbdp_api::Tenant;
use tracing::info;

use super::{
    checks::{self, Rejection},
    ledger::{FileRecord, FileStatus, start_of_day},
    manager::{Manager, Result, bson_time, new_id, now_bson},
    schedule::{folder_of, select_app},
};
use crate::{
    staging::{FileState, Location, StagedFile},
    tenant::names::TenantNames,
};

impl Manager {
    /// Finishes moves that a crash interrupted: records whose file is not yet in its folder.
    pub(super) async fn refile(&self) -> Result<()> {
        for record in self.ledger.files(doc! { "filed": false }).await? {
            let incoming = Location::incoming(&record.tenant, &record.name);
            let target_state = folder_of(record.status);
            let target = incoming.moved(target_state, &record.id);
            let processing = incoming.moved(FileState::Processing, &record.id);
            let staging = &self.ctx.staging;
            if staging.exists(&incoming).await? {
                staging.move_file(&incoming, &target).await?;
            } else if target_state != FileState::Processing && staging.exists(&processing).await? {
                staging.move_file(&processing, &target).await?;
            }
            if matches!(record.status, FileStatus::Rejected | FileStatus::DeadLettered)
                && let Some(reason) = &record.reason
            {
                staging.write_reason(&target, reason).await?;
            }
            self.ledger.update_file(&record.id, doc! { "filed": true }).await?;
            info!(file = %record.name, id = %record.id, "finished an interrupted move");
        }
        Ok(())
    }

    /// Takes in the tenant's files that have stopped changing.
    pub(super) async fn intake(&self, tenant: &Tenant) -> Result<()> {
        let name = tenant.name_any();
        let listing = self.ctx.staging.list_incoming(&name).await?;
        let mut stable = Vec::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|(t, f), _| t != &name || listing.iter().any(|l| &l.name == f));
            for file in listing {
                let key = (name.clone(), file.name.clone());
                let now = (file.size, file.modified);
                if seen.get(&key) == Some(&now) {
                    seen.remove(&key);
                    stable.push(file);
                } else {
                    seen.insert(key, now);
                }
            }
        }
        for file in stable {
            self.admit(tenant, &file).await?;
        }
        Ok(())
    }

    /// Decides on one complete file: records the decision, then files it.
    pub(super) async fn admit(&self, tenant: &Tenant, file: &StagedFile) -> Result<()> {
        let name = tenant.name_any();
        let rules = &tenant.spec.agreement.files;
        let id = new_id();
        let incoming = Location::incoming(&name, &file.name);
        let today = self.ledger.accepted_since(&name, start_of_day()).await?;
        let mut record = FileRecord {
            id: id.clone(),
            tenant: name.clone(),
            app: None,
            name: file.name.clone(),
            sha256: String::new(),
            bytes: i64::try_from(file.size).unwrap_or(i64::MAX),
            format: None,
            records: None,
            status: FileStatus::Rejected,
            attempts: 0,
            run: None,
            received_at: bson_time(file.modified),
            decided_at: now_bson(),
            started_at: None,
            finished_at: None,
            next_attempt_at: None,
            duration_ms: None,
            rows_read: None,
            rows_written: None,
            rows_duplicate: None,
            rows_rejected: None,
            reason: None,
            filed: false,
        };
        let listed = match file.not_regular {
            Some(kind) => Err(Rejection::NotRegular { file: file.name.clone(), kind }),
            None => checks::check_listing(&name, rules, &file.name, file.size),
        };
        let decision = match listed {
            Err(rejection) => Err(rejection),
            Ok(()) => {
                let content = self.ctx.staging.read(&incoming).await?;
                let inspected = checks::inspect(&name, rules, &file.name, &content);
                match inspected {
                    Err(rejection) => Err(rejection),
                    Ok(found) => {
                        record.sha256 = found.sha256.clone();
                        record.format = Some(found.format.as_str().into());
                        record.records = i64::try_from(found.records).ok();
                        let duplicate = if rules.reject_duplicates {
                            self.ledger.accepted_with_hash(&name, &found.sha256).await?
                        } else {
                            None
                        };
                        match duplicate {
                            Some(original) => Err(Rejection::Duplicate {
                                file: file.name.clone(),
                                original: original.name,
                                original_id: original.id,
                            }),
                            None => {
                                checks::check_allowance(&name, rules, &file.name, file.size, today).and_then(|()| {
                                    select_app(&self.apps_of(tenant), &file.name, found.format)
                                        .map(|app| app.name_any())
                                        .ok_or_else(|| Rejection::NoApp {
                                            tenant: name.clone(),
                                            file: file.name.clone(),
                                            format: found.format.as_str(),
                                        })
                                })
                            }
                        }
                    }
                }
            }
        };
        match decision {
            Ok(app) => {
                record.status = FileStatus::Queued;
                record.app = Some(app.clone());
                self.ledger.insert_file(&record).await?;
                self.touch(&TenantNames::of(tenant).namespace, &app);
                self.ctx.staging.move_file(&incoming, &incoming.moved(FileState::Processing, &id)).await?;
                info!(tenant = %name, file = %file.name, %id, %app, "accepted file");
                self.ctx.metrics.batch_file(&name, "accepted", file.size, 0);
            }
            Err(rejection) => {
                let reason = rejection.to_string();
                record.reason = Some(reason.clone());
                self.ledger.insert_file(&record).await?;
                let target = incoming.moved(FileState::Rejected, &id);
                self.ctx.staging.move_file(&incoming, &target).await?;
                self.ctx.staging.write_reason(&target, &reason).await?;
                info!(tenant = %name, file = %file.name, %id, %reason, "rejected file");
                self.ctx.metrics.batch_file(&name, "rejected", file.size, 0);
                self.ctx.event(&tenant.object_ref(&()), EventType::Warning, "FileRejected", &reason).await;
            }
        }
        self.ledger.update_file(&id, doc! { "filed": true }).await?;
        Ok(())
    }
}
