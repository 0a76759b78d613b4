# Every rule is its stage's declaration (src/slotbench/pipeline.py), read through common.smk.
# The export's output is the receipt it writes once data/{dataset}/ is published (pipeline.py says why).
rule export:
    input:
        unpack(stage_inputs("export")),
    output:
        **stage_outputs("export"),
    params:
        config=stage_params("export"),
    resources:
        **stage_resources("export"),
    log:
        stage_log("export"),
    shell:
        stage_shell("export")
