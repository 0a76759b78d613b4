# Every rule is its stage's declaration (src/slotbench/pipeline.py), read through common.smk.
rule eval_seg:
    input:
        unpack(stage_inputs("eval_seg")),
    output:
        **stage_outputs("eval_seg"),
    params:
        config=stage_params("eval_seg"),
    resources:
        **stage_resources("eval_seg"),
    log:
        stage_log("eval_seg"),
    shell:
        stage_shell("eval_seg")


rule eval_recon:
    input:
        unpack(stage_inputs("eval_recon")),
    output:
        **stage_outputs("eval_recon"),
    params:
        config=stage_params("eval_recon"),
    resources:
        **stage_resources("eval_recon"),
    log:
        stage_log("eval_recon"),
    shell:
        stage_shell("eval_recon")


rule eval_comp_gen:
    input:
        unpack(stage_inputs("eval_comp_gen")),
    output:
        **stage_outputs("eval_comp_gen"),
    params:
        config=stage_params("eval_comp_gen"),
    resources:
        **stage_resources("eval_comp_gen"),
    log:
        stage_log("eval_comp_gen"),
    shell:
        stage_shell("eval_comp_gen")


rule fvd:
    input:
        unpack(stage_inputs("fvd")),
    output:
        **stage_outputs("fvd"),
    params:
        config=stage_params("fvd"),
    resources:
        **stage_resources("fvd"),
    log:
        stage_log("fvd"),
    shell:
        stage_shell("fvd")
