# Every rule is its stage's declaration (src/slotbench/pipeline.py), read through common.smk.
rule report:
    input:
        unpack(stage_inputs("report")),
    output:
        **stage_outputs("report"),
    params:
        config=stage_params("report"),
    resources:
        **stage_resources("report"),
    log:
        stage_log("report"),
    shell:
        stage_shell("report")
