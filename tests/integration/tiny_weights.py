"""Command-line overrides for running `configs/demo/eval.yaml` on the networks `weights tiny` writes (random, fast)
instead of those `weights demo` trains (minutes): the tiny random SqueezeNet classifier (100 classes) and the
tiny Inception stand-in. The metrics these give are labelled "random network — not meaningful"."""


def tiny_eval_networks(run_dir) -> list[str]:
    return [
        "--model.init_args.classifier.architecture=squeezenet1_1",
        "--model.init_args.classifier.num_classes=100",
        "--model.init_args.classifier.image_size=64",
        "--model.init_args.inception.architecture=tiny",
        f"--model.init_args.inception.weights_path={run_dir}/weights/eval/inception.safetensors",
        "--model.init_args.n_way=50",
        "--model.init_args.is_splits=2",
        # the tiny random pipelines were not trained with condition dropout: no guidance against their null input
        "--model.init_args.guidance_scale=1.0",
    ]
