// Package benchrules holds the rules file of `make bench`: one key template
// and one channel per row of shards(tenant_id, id, payload), the wide form
// keeping the tenant; and a rule on scale_items, which the suite's scale
// workload truncates. The suite and the Go micro-benchmarks share it, so
// that they measure the same rendering.
package benchrules

// YAML is the rules file.
const YAML = `version: 1
channel_prefix: "cache:invalidate:"
rules:
  - name: shard-structured
    table: public.shards
    keys: ["tenant:{tenant_id}:shard:{id}:structured"]
    channel: "shard:{tenant_id}:{id}"
    scope: [tenant_id]
  - name: scale-item
    table: public.scale_items
    keys: ["tenant:{tenant_id}:item:{id}"]
    channel: "item:{tenant_id}:{id}"
    scope: [tenant_id]
`
