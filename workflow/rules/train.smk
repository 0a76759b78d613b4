rule tokenizer:
    input:
        meta=paths.DATA_META,
        code=code("tokenizer"),
    output:
        checkpoint=paths.TOKENIZER_CHECKPOINT,
        summary=paths.TOKENIZER_SUMMARY,
    params:
        config=tokenizer_params,
    threads: workflow.cores
    resources:
        gpu=1,
    log:
        "logs/tokenizer/{dataset}_{tokenizer}.log",
    shell:
        "{PYTHON} -m slotbench tokenizer --dataset {wildcards.dataset} --tokenizer {wildcards.tokenizer}"
        " 2>&1 | tee {log}"


rule train:
    input:
        unpack(train_inputs),
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
