# Every rule is its stage's declaration (src/slotbench/pipeline.py), read through common.smk.
localrules:
    table_model,
    table_dataset,


rule table_model:
    input:
        unpack(stage_inputs("table_model")),
    output:
        **stage_outputs("table_model"),
    params:
        config=stage_params("table_model"),
    resources:
        **stage_resources("table_model"),
    log:
        stage_log("table_model"),
    shell:
        stage_shell("table_model")


rule table_dataset:
    input:
        unpack(stage_inputs("table_dataset")),
    output:
        **stage_outputs("table_dataset"),
    params:
        config=stage_params("table_dataset"),
    resources:
        **stage_resources("table_dataset"),
    log:
        stage_log("table_dataset"),
    shell:
        stage_shell("table_dataset")
