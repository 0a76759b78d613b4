rule eval_seg:
    input:
        checkpoint=paths.CHECKPOINT,
        meta=paths.DATA_META,
        code=code("eval_seg"),
    output:
        seg=paths.SEG_METRICS,
    params:
        config=eval_seg_params,
    resources:
        gpu=1,
    log:
        "logs/eval_seg/{dataset}_{model}_seed{seed}.log",
    shell:
        "{PYTHON} -m slotbench eval-seg --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} 2>&1 | tee {log}"
