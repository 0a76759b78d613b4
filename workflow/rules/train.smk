rule train:
    input:
        meta=paths.DATA_META,
        code=code("train"),
    output:
        checkpoint=paths.CHECKPOINT,
        summary=paths.TRAIN_SUMMARY,
    params:
        config=train_params,
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/train/{dataset}_{model}_seed{seed}.log",
    shell:
        "{PYTHON} -m slotbench train --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} 2>&1 | tee {log}"
