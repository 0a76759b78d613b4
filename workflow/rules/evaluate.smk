rule eval_seg:
    input:
        checkpoint=paths.CHECKPOINT,
        export=paths.EXPORT_RECEIPT,
        code=code("eval_seg"),
    output:
        seg=paths.SEG_METRICS,
    params:
        config=pair_params("eval_seg"),
    resources:
        **job_resources("eval_seg"),
    log:
        paths.ROOT + "logs/eval_seg/{dataset}_{model}_seed{seed}.log",
    shell:
        "{PYTHON} -m slotbench eval-seg --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} 2>&1 | log_to {log}"


rule eval_recon:
    input:
        checkpoint=paths.CHECKPOINT,
        export=paths.EXPORT_RECEIPT,
        code=code("eval_recon"),
    output:
        record=paths.RECON_METRICS,
    params:
        config=pair_params("eval_recon"),
    resources:
        **job_resources("eval_recon"),
    log:
        paths.ROOT + "logs/eval_recon/{dataset}_{model}_seed{seed}.log",
    shell:
        "{PYTHON} -m slotbench eval-recon --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} 2>&1 | log_to {log}"


rule eval_comp_gen:
    input:
        checkpoint=paths.CHECKPOINT,
        export=paths.EXPORT_RECEIPT,
        gt_frames=paths.RECON_METRICS,  # eval_recon writes the ground-truth frames first
        code=code("eval_comp_gen"),
    output:
        record=paths.COMP_GEN_RECORD,
    params:
        config=pair_params("eval_comp_gen"),
    resources:
        **job_resources("eval_comp_gen"),
    log:
        paths.ROOT + "logs/eval_comp_gen/{dataset}_{model}_seed{seed}.log",
    shell:
        "{PYTHON} -m slotbench eval-comp-gen --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} 2>&1 | log_to {log}"


rule fvd:
    input:
        record=fvd_record,
        gt_frames=paths.RECON_METRICS,
        code=code("fvd"),
    output:
        fvd=paths.FVD_METRICS,
    params:
        config=pair_params("fvd"),
    resources:
        **job_resources("fvd"),
    log:
        paths.ROOT + "logs/fvd/{dataset}_{model}_seed{seed}_{kind}.log",
    shell:
        "{PYTHON} -m slotbench fvd --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} --kind {wildcards.kind} 2>&1 | log_to {log}"
