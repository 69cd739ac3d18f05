//! `SubscribeAll`: every run event, or with `required_tags` only those of
//! runs assigned to a connected worker whose tags satisfy every entry
//! (`key=value`, or `key=*` for any value), as the crate's handler does,
//! but looked up in this control plane's runs.

use blazen_controlplane::pb::{PostcardRequest, PostcardResponse};
use blazen_controlplane::protocol::{validate_envelope_version, RunEventWire, SubscribeAllRequest};
use blazen_controlplane::server::service::PostcardResponseStream;
use futures_util::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{decode, Plane, Service};

impl Plane {
    /// Whether `run_id` is assigned to a connected worker with every tag of
    /// `required`.
    fn worker_tags_match(&self, run_id: Uuid, required: &[String]) -> bool {
        let Some(node) = self.run_state(run_id).and_then(|(s, _)| s.assigned_to) else {
            return false;
        };
        let registry = &self.shared.registry;
        let Some(worker) = registry
            .session_for_node(&node)
            .and_then(|s| registry.get(s))
        else {
            return false;
        };
        required.iter().all(|entry| match entry.split_once('=') {
            Some((k, "*")) => worker.tags.contains_key(k),
            Some((k, v)) => worker.tags.get(k).map(String::as_str) == Some(v),
            None => false,
        })
    }
}

impl Service {
    pub(super) async fn subscribe_everything(
        &self,
        request: Request<PostcardRequest>,
    ) -> Result<Response<PostcardResponseStream>, Status> {
        let req: SubscribeAllRequest =
            decode(&request.get_ref().postcard_payload, "SubscribeAllRequest")?;
        validate_envelope_version(req.envelope_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let required = req.required_tags;
        let plane = self.cp.clone();
        let events = BroadcastStream::new(self.cp.bus.subscribe()).filter_map(move |received| {
            let keep = received.ok().filter(|event| {
                required.is_empty() || plane.worker_tags_match(event.run_id, &required)
            });
            async move {
                let wire = RunEventWire::from_core(&*keep?).ok()?;
                let postcard_payload = crate::common::postcard(&wire).ok()?;
                Some(Ok(PostcardResponse { postcard_payload }))
            }
        });
        Ok(Response::new(Box::pin(events)))
    }
}
