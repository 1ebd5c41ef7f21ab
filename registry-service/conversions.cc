#include "registry-service/conversions.h"

namespace wake::registry {

void ToProto(const sync::Registration& row, v1::Registration* out) {
  out->set_id(row.id);
  out->set_tenant_id(row.tenant_id);
  out->set_subscriber_url(row.subscriber_url);
  out->set_source_url(row.source_url);
  if (row.condition.kind == sync::ConditionKind::kRunFinished) {
    out->mutable_condition()->mutable_run_finished();
  } else {
    v1::ChangeCondition* change = out->mutable_condition()->mutable_change();
    for (const std::string& collection : row.condition.collections) {
      change->add_collections(collection);
    }
    for (sync::ChangeOp op : row.condition.ops) {
      change->add_ops(static_cast<v1::Op>(static_cast<int>(op)));
    }
  }
  out->set_debounce_ms(row.debounce_ms);
  out->set_timeout_ms(row.timeout_ms);
  out->set_one_shot(row.one_shot);
  out->set_timeout_consumed(row.timeout_consumed);
  out->set_include_response(row.include_response);
  out->set_manifest_key(row.manifest_key);
  ToProto(row.created_at, out->mutable_created_at());
}

sync::Registration FromRequest(const v1::RegisterWakeRequest& request) {
  sync::Registration row;
  row.tenant_id = request.tenant_id();
  row.subscriber_url = request.subscriber_url();
  row.source_url = request.source_url();
  if (request.condition().has_change()) {
    row.condition.kind = sync::ConditionKind::kChange;
    for (const std::string& collection : request.condition().change().collections()) {
      row.condition.collections.push_back(collection);
    }
    for (int op : request.condition().change().ops()) {
      row.condition.ops.push_back(static_cast<sync::ChangeOp>(op));
    }
    sync::Canonicalize(row.condition);
  }
  row.debounce_ms = request.debounce_ms();
  row.timeout_ms = request.timeout_ms();
  row.one_shot = request.one_shot();
  row.include_response = request.has_include_response() ? request.include_response() : true;
  row.manifest_key = request.manifest_key();
  return row;
}

}  // namespace wake::registry
