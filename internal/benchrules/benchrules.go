// Package benchrules holds the rules file of `make bench`: one key template
// and one channel per row of shards(tenant_id, id, payload), the wide form
// keeping the tenant. The suite and the Go micro-benchmarks share it, so
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
`
