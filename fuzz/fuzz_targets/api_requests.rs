//! Requests to the node API and the debug service, as the agent (PID 1) receives them:
//! protobuf bytes decoded into each request message, then the checks every handler
//! applies (`cairn_api::validate`). Both must end in a value or an error, never a panic.
#![no_main]

use cairn_api::node::v1::GetKubeconfigRequest;
use cairn_api::v1::{
    load_image_request::Part, GetDebugKubeconfigRequest, GetLogsRequest, LoadImageRequest,
    RunContainerRequest, SignalComponentRequest, WaitConditionRequest,
};
use cairn_api::validate;
use prost::Message;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 7 {
        0 => {
            if let Ok(r) = GetLogsRequest::decode(bytes) {
                let _ = validate::name("component", &r.component);
                let _ = validate::tail_lines(r.tail_lines);
            }
        }
        1 => {
            if let Ok(r) = WaitConditionRequest::decode(bytes) {
                let _ = validate::name("condition", &r.name);
                let _ = validate::timeout_ms(r.timeout_ms);
            }
        }
        2 => {
            if let Ok(r) = GetDebugKubeconfigRequest::decode(bytes) {
                let _ = validate::subject("user", &r.user);
                let _ = validate::groups(&r.groups);
                let _ = validate::validity(r.validity_seconds);
            }
        }
        3 => {
            if let Ok(r) = GetKubeconfigRequest::decode(bytes) {
                let _ = validate::validity(r.validity_seconds);
            }
        }
        4 => {
            if let Ok(r) = SignalComponentRequest::decode(bytes) {
                let _ = validate::name("component", &r.component);
                let _ = validate::signal(&r.signal);
            }
        }
        5 => {
            if let Ok(r) = RunContainerRequest::decode(bytes) {
                let _ = validate::image(&r.image);
                let _ = validate::command(&r.command);
                let _ = validate::run_timeout_ms(r.timeout_ms);
            }
        }
        _ => {
            if let Ok(r) = LoadImageRequest::decode(bytes) {
                match r.part {
                    Some(Part::Header(header)) => {
                        let _ = validate::archive_size(header.archive_size);
                    }
                    Some(Part::Data(chunk)) => {
                        let _ = validate::load_chunk(&chunk);
                    }
                    None => {}
                }
            }
        }
    }
});
