# Every rule is its stage's declaration (src/slotbench/pipeline.py), read through common.smk.
rule tokenizer:
    input:
        unpack(stage_inputs("tokenizer")),
    output:
        **stage_outputs("tokenizer"),
    params:
        config=stage_params("tokenizer"),
    threads: workflow.cores
    resources:
        **stage_resources("tokenizer"),
    log:
        stage_log("tokenizer"),
    shell:
        stage_shell("tokenizer")


rule train:
    input:
        unpack(stage_inputs("train")),
    output:
        **stage_outputs("train"),
    params:
        config=stage_params("train"),
    threads: workflow.cores
    resources:
        **stage_resources("train"),
    log:
        stage_log("train"),
    shell:
        stage_shell("train")
