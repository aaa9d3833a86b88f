import pytest
import torch

from dreamdiffusion.generation import derive_seed, generate_images, unet_calls
from dreamdiffusion.pipeline import DreamDiffusionPipeline, build_tiny_pipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    folder = build_tiny_pipeline(tmp_path_factory.mktemp("gen") / "pipeline", seed=0)
    return DreamDiffusionPipeline.from_pretrained(folder)


class CallCounter:
    """Counts UNet forward passes and the batch size of each."""

    def __init__(self, unet):
        self.batches = []
        self.handle = unet.register_forward_hook(lambda module, args, out: self.batches.append(args[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def sample(pipe, eeg, seeds, **kwargs):
    condition = pipe.encode_eeg(eeg)
    null = pipe.condition_model.null(len(seeds)) if kwargs.get("guidance_scale", 1.0) != 1.0 else None
    return generate_images(pipe.unet, pipe.vae, pipe.scheduler.config, condition, null, seeds=seeds, **kwargs)


def test_images_are_in_unit_range_with_the_native_size(pipe):
    images = sample(pipe, torch.randn(2, 128, 512), [1, 2], num_inference_steps=3)
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0


def test_seeded_generation_does_not_depend_on_the_batch(pipe):
    torch.manual_seed(0)
    eeg = torch.randn(3, 128, 512)
    together = sample(pipe, eeg, [11, 12, 13], num_inference_steps=4)
    alone = torch.cat([sample(pipe, eeg[i : i + 1], [s], num_inference_steps=4) for i, s in enumerate([11, 12, 13])])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    again = sample(pipe, eeg[[1]], [99], num_inference_steps=4)
    assert (again - together[1]).abs().max() > 1e-3  # the seed matters


@pytest.mark.parametrize("sampler,steps", [("ddim", 5), ("plms", 5)])
def test_unet_calls_per_sampler(pipe, sampler, steps):
    with CallCounter(pipe.unet) as counter:
        sample(pipe, torch.randn(2, 128, 512), [0, 1], sampler=sampler, num_inference_steps=steps)
    assert len(counter.batches) == unet_calls(sampler, steps) == steps + (sampler == "plms")
    assert set(counter.batches) == {2}


def test_plms_250_steps_is_reachable(pipe):
    from dreamdiffusion.generation import build_sampler

    scheduler = build_sampler(pipe.scheduler.config, "plms")
    scheduler.set_timesteps(250)
    assert type(scheduler).__name__ == "PNDMScheduler" and scheduler.config.skip_prk_steps
    assert len(scheduler.timesteps) == unet_calls("plms", 250) == 251
    assert int(scheduler.timesteps.min()) >= 0 and int(scheduler.timesteps.max()) < 1000


def test_classifier_free_guidance_doubles_the_batch_and_changes_the_image(pipe):
    eeg = torch.randn(2, 128, 512)
    with CallCounter(pipe.unet) as counter:
        guided = sample(pipe, eeg, [3, 4], num_inference_steps=3, guidance_scale=3.0)
    assert counter.batches == [4, 4, 4]
    plain = sample(pipe, eeg, [3, 4], num_inference_steps=3)
    assert (guided - plain).abs().max() > 1e-4
    # scale 1 is plain conditional sampling even with a null condition given
    condition = pipe.encode_eeg(eeg)
    same = generate_images(pipe.unet, pipe.vae, pipe.scheduler.config, condition, pipe.condition_model.null(2),
                           seeds=[3, 4], num_inference_steps=3, guidance_scale=1.0)
    torch.testing.assert_close(same, plain)


def test_time_vector_is_passed_as_class_labels(pipe):
    from diffusers import UNet2DConditionModel

    from dreamdiffusion.models.condition import Condition

    unet = UNet2DConditionModel.from_config({**pipe.unet.config, "class_embed_type": "identity"}).eval()
    hidden = pipe.encode_eeg(torch.randn(1, 128, 512)).hidden_states
    seen = []
    unet.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["class_labels"]), with_kwargs=True)
    zero = generate_images(unet, pipe.vae, pipe.scheduler.config, Condition(None, hidden, torch.zeros(1, 128)), None,
                           seeds=[0], num_inference_steps=2)
    some = generate_images(unet, pipe.vae, pipe.scheduler.config, Condition(None, hidden, torch.ones(1, 128)), None,
                           seeds=[0], num_inference_steps=2)
    assert seen[-1].shape == (1, 128) and (zero - some).abs().max() > 1e-5


def test_bad_arguments_are_refused(pipe):
    condition = pipe.encode_eeg(torch.randn(2, 128, 512))
    args = (pipe.unet, pipe.vae, pipe.scheduler.config, condition, None)
    with pytest.raises(ValueError, match="2 seeds for a batch of 2|1 seeds for a batch of 2"):
        generate_images(*args, seeds=[1], num_inference_steps=2)
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*DPMSolverMultistepScheduler"):
        generate_images(*args, seeds=[1, 2], sampler="euler", num_inference_steps=2)
    with pytest.raises(ValueError, match="unknown sampler 'AutoencoderKL'"):
        unet_calls("AutoencoderKL", 2)
    with pytest.raises(ValueError, match="not a multiple"):
        generate_images(*args, seeds=[1, 2], num_inference_steps=2, image_size=60)


def test_derived_seeds_differ_per_trial_and_sample():
    assert len({derive_seed(5, 0, 0), derive_seed(5, 0, 1), derive_seed(5, 1, 0), derive_seed(6, 0, 0)}) == 4
    assert derive_seed(5, 1, 0) == derive_seed(5, 1, 0)


@pytest.mark.parametrize(
    "sampler,steps,calls",
    [("DPMSolverMultistepScheduler", 5, 5), ("EulerDiscreteScheduler", 4, 4), ("HeunDiscreteScheduler", 3, 5),
     ("UniPCMultistepScheduler", 4, 4), ("DDIMScheduler", 3, 3)],
)
def test_any_diffusers_scheduler_by_class_name(pipe, sampler, steps, calls):
    with CallCounter(pipe.unet) as counter:
        images = sample(pipe, torch.randn(2, 128, 512), [0, 1], sampler=sampler, num_inference_steps=steps)
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()
    assert len(counter.batches) == unet_calls(sampler, steps, pipe.scheduler.config) == calls


def test_a_scheduler_instance_is_used_as_it_is(pipe):
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    steps = []
    step = scheduler.step
    scheduler.step = lambda *a, **k: steps.append(1) or step(*a, **k)
    eeg = torch.randn(1, 128, 512)
    by_instance = sample(pipe, eeg, [4], sampler=scheduler, num_inference_steps=3)
    assert len(steps) == 3 == unet_calls(scheduler, 3)
    assert len(steps) == 3  # unet_calls counted on a copy: the instance's step was not called again
    torch.testing.assert_close(by_instance, sample(pipe, eeg, [4], sampler="DPMSolverMultistepScheduler", num_inference_steps=3))


def test_bf16_autocast_can_be_forced_on_cpu(pipe):
    from dreamdiffusion.generation import use_bf16

    assert use_bf16(torch.device("cpu"), None) is False and use_bf16(torch.device("cpu"), True) is True
    eeg = torch.randn(1, 128, 512)
    fp32 = sample(pipe, eeg, [7], num_inference_steps=2)
    bf16 = sample(pipe, eeg, [7], num_inference_steps=2, autocast=True)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert 0 < (bf16 - fp32).abs().max() < 0.2  # the same image up to bf16 rounding


def test_dpm_solver_plus_plus_20_steps_is_the_default_sampler_everywhere(repo):
    """One default (benchmarks/samplers.py measured it): the code's defaults, the configs; the authors' config keeps PLMS-250."""
    import inspect

    import yaml

    from dreamdiffusion.commands import generate
    from dreamdiffusion.generation import DEFAULT_SAMPLER, DEFAULT_STEPS, build_sampler, default_scheduler
    from dreamdiffusion.stages.evaluate import EvalModule
    from dreamdiffusion.stages.finetune import EEGSDFinetuneModule

    assert (DEFAULT_SAMPLER, DEFAULT_STEPS) == ("DPMSolverMultistepScheduler", 20)
    defaults = lambda f: {k: p.default for k, p in inspect.signature(f).parameters.items()}  # noqa: E731
    assert (defaults(EvalModule)["sampler"], defaults(EvalModule)["num_inference_steps"]) == (DEFAULT_SAMPLER, 20)
    assert defaults(EEGSDFinetuneModule)["val_sampler"] == DEFAULT_SAMPLER
    assert (defaults(generate_images)["sampler"], defaults(generate_images)["num_inference_steps"]) == (DEFAULT_SAMPLER, 20)
    assert defaults(DreamDiffusionPipeline.__call__)["num_inference_steps"] == 20 == generate.DEFAULT_STEPS
    from dreamdiffusion.generation import SD15_SCHEDULE

    for scheduler in (default_scheduler(SD15_SCHEDULE), build_sampler(SD15_SCHEDULE)):
        assert type(scheduler).__name__ == DEFAULT_SAMPLER and scheduler.config.algorithm_type == "dpmsolver++"

    def model_args(config):
        return yaml.safe_load((repo / "configs" / config).read_text())["model"]["init_args"]

    for config in ("eval.yaml", "things/eval.yaml"):
        assert (model_args(config)["sampler"], model_args(config)["num_inference_steps"]) == (DEFAULT_SAMPLER, 20), config
    for config in ("demo/eval.yaml", "things/demo/eval.yaml"):  # the demos keep their smaller step budgets
        assert model_args(config)["sampler"] == DEFAULT_SAMPLER, config
    for config in ("finetune.yaml", "things/finetune.yaml"):
        assert (model_args(config)["val_sampler"], model_args(config)["val_num_inference_steps"]) == (DEFAULT_SAMPLER, 20), config
    assert (model_args("eval_authors.yaml")["sampler"], model_args("eval_authors.yaml")["num_inference_steps"]) == ("plms", 250)
