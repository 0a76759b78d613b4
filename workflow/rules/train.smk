rule tokenizer:
    input:
        unpack(tokenizer_inputs),
        code=code("tokenizer"),
    output:
        checkpoint=paths.TOKENIZER_CHECKPOINT,
        summary=paths.TOKENIZER_SUMMARY,
    params:
        config=tokenizer_params,
    threads: workflow.cores
    resources:
        **job_resources("tokenizer"),
    log:
        paths.ROOT + "logs/tokenizer/{dataset}_{tokenizer}.log",
    shell:
        "{TOKENIZER_CMD} tokenizer --dataset {wildcards.dataset} --tokenizer {wildcards.tokenizer}"
        " 2>&1 | log_to {log}"


rule train:
    input:
        unpack(train_inputs),
        code=code("train"),
    output:
        checkpoint=paths.CHECKPOINT,
        summary=paths.TRAIN_SUMMARY,
    params:
        config=pair_params("train"),
    threads: workflow.cores
    resources:
        **job_resources("train"),
    log:
        paths.ROOT + "logs/train/{dataset}_{model}_seed{seed}.log",
    shell:
        "{TRAIN_CMD} train --dataset {wildcards.dataset} --model {wildcards.model}"
        " --seed {wildcards.seed} 2>&1 | log_to {log}"
