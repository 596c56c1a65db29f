"""Dynamic cross-check of the static analyzer: build each decoder's tiny model, observe what
it shows about itself (`observe`), compare with `codegen analyze` field by field (`compare`),
report agreement per field (`run`). Needs torch; the static `analyze` path never imports it."""
