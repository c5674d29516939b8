"""Distiller schedules: reading, the epoch rule, the AGP formula, every pruner class, name
resolution across DataParallel's ``module.``, and one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simulator.base.errors import ConfigError
from simulator.compress.pruners import GroupType, Norm, RankedStructurePruning, SparsityLevelPruning, ThresholdPruning
from simulator.compress.schedule import PrunerClass, Window, agp_target_sparsity, apply_schedule, load_schedule
from simulator.model.parameters import ParameterTree, canonical_name, is_parameter_name

DATA = Path(__file__).resolve().parent / "data" / "distiller"
RESNET_SCHEDULE = DATA / "resnet20_filters.schedule_agp.yaml"


def distiller_agp(initial, final, start, end, freq, epoch):
    """Distiller's compute_target_sparsity, written out independently of the simulator."""
    span = ((end - start - 1) // freq) * freq
    return final + (initial - final) * (1.0 - ((epoch - start) / span)) ** 3


@pytest.fixture(scope="module")
def dense_parameters():
    """The trained dense ResNet-20 checkpoint's parameters (module.-prefixed names)."""
    from simulator.model.checkpoint import load_checkpoint

    return load_checkpoint(DATA / "checkpoint_trained_dense.pth.tar").parameters()


@pytest.fixture(scope="module")
def resnet_pruned(dense_parameters):
    """The fixture ResNet-20 schedule applied to the dense checkpoint (epochs 0..48)."""
    return apply_schedule(load_schedule(RESNET_SCHEDULE), ParameterTree(dense_parameters), "dense.pth.tar")


@pytest.fixture
def tiny_tree():
    """Parameters named like Distiller's AlexNet (features.* conv, classifier.* FC), seeded."""
    g = torch.Generator().manual_seed(3)
    return ParameterTree({
        "features.0.weight": torch.randn(8, 4, 3, 3, generator=g),
        "features.0.bias": torch.randn(8, generator=g),
        "classifier.1.weight": torch.randn(10, 20, generator=g),
        "classifier.1.bias": torch.randn(10, generator=g),
    })


@pytest.fixture
def schedule_file(write_yaml):
    """``schedule_file(pruners, policies, **extra)`` writes a version-1 schedule and returns its path."""
    def write(pruners, policies, **extra):
        return write_yaml("schedule.yaml", {"version": 1, "pruners": pruners, "policies": policies, **extra})
    return write


def one_policy(name="p", **when):
    return [{"pruner": {"instance_name": name}, **(when or {"epochs": [0]})}]


# --- the fixture schedules ---------------------------------------------------------------------

def test_fixture_schedules_load():
    resnet = load_schedule(RESNET_SCHEDULE)
    assert [p.pruner for p in resnet.policies] == ["low_pruner", "fine_pruner", "fc_pruner"]
    assert resnet.pruners["low_pruner"].kind is PrunerClass.L1_RANKED_AGP
    assert resnet.last_epoch == 48
    assert load_schedule(DATA / "alexnet.schedule_agp.yaml").last_epoch == 16
    assert load_schedule(DATA / "alexnet.schedule_sensitivity.yaml").last_epoch == 36


def test_epoch_rule_excludes_the_ending_epoch():
    policies = load_schedule(RESNET_SCHEDULE).policies
    assert policies[0].epochs == tuple(range(0, 30, 2))
    assert policies[1].epochs == tuple(range(30, 50, 2))
    assert policies[1].window == Window(30, 50, 2)


def test_unapplied_sections_are_listed_in_one_warning():
    warning = load_schedule(RESNET_SCHEDULE).warning()
    assert "\n" not in warning
    assert "extensions (net_thinner)" in warning and "lr_schedulers (pruning_lr)" in warning


@pytest.mark.parametrize("epoch", range(30, 50, 2))
def test_agp_target_is_distillers_formula_exactly(epoch):
    assert agp_target_sparsity(0.05, 0.70, Window(30, 50, 2), epoch) == distiller_agp(0.05, 0.70, 30, 50, 2, epoch)


def test_agp_sparsity_per_epoch_matches_distiller(resnet_pruned, dense_parameters):
    name = "module.layer3.1.conv1.weight"
    numel = dense_parameters[name].numel()
    steps = [s for s in resnet_pruned.steps if s.parameter == name]
    assert [s.epoch for s in steps] == list(range(30, 50, 2))
    for step in steps:
        target = distiller_agp(0.05, 0.70, 30, 50, 2, step.epoch)
        assert step.target_sparsity == target
        # Distiller prunes int(target x n) weights (trained weights: no ties at the threshold)
        assert step.zeros == int(target * numel), step


def test_structured_agp_prunes_whole_filters_per_epoch(resnet_pruned):
    steps = [s for s in resnet_pruned.steps if s.parameter == "module.layer2.0.conv1.weight"]
    assert [s.epoch for s in steps] == list(range(0, 30, 2))
    for step in steps:
        filters = int(distiller_agp(0.10, 0.50, 0, 30, 2, step.epoch) * 32)
        assert step.zeros == filters * 16 * 9, step


def test_final_counts_match_distillers_own_log(resnet_pruned):
    """The schedule file's header quotes Distiller's summary: NNZ 11060 for the fine-pruned
    convolutions and 320 for the row-pruned FC layer."""
    tensors = resnet_pruned.tensors
    for block in ("layer3.1.conv1", "layer3.1.conv2", "layer3.2.conv1", "layer3.2.conv2"):
        assert int(torch.count_nonzero(tensors[f"module.{block}.weight"])) == 11060
    assert int(torch.count_nonzero(tensors["module.fc.weight"])) == 320


def test_rows_pruner_zeroes_input_columns_of_the_fc_weight(resnet_pruned):
    fc = resnet_pruned.tensors["module.fc.weight"]
    assert int((fc.abs().sum(dim=0) == 0).sum()) == 32      # Distiller's rows: torch columns
    assert int((fc.abs().sum(dim=1) == 0).sum()) == 0


def test_filters_pruner_zeroes_half_the_filters(resnet_pruned):
    for name in ("module.layer2.0.conv1.weight", "module.layer2.0.downsample.0.weight"):
        w = resnet_pruned.tensors[name]
        assert int((w.abs().sum(dim=(1, 2, 3)) == 0).sum()) == w.shape[0] // 2


def test_masks_are_installed_with_torch_prune(resnet_pruned):
    assert set(resnet_pruned.masks) == {
        f"module.layer2.{b}.{c}.weight" for b in range(3) for c in ("conv1", "conv2")
    } | {"module.layer2.0.downsample.0.weight", "module.fc.weight"} | {
        f"module.layer3.{b}.{c}.weight" for b in (1, 2) for c in ("conv1", "conv2")}


def test_epochs_limit_stops_early(dense_parameters):
    result = apply_schedule(load_schedule(RESNET_SCHEDULE), ParameterTree(dense_parameters), "m", epochs=31)
    assert result.epochs == 31
    assert max(s.epoch for s in result.steps) == 30
    assert "module.fc.weight" in result.masks
    assert result.final_sparsity("module.layer3.1.conv1.weight") == pytest.approx(0.05, abs=1e-4)


@pytest.fixture
def mini_alexnet():
    """AlexNet's parameter names (as workloads/alexnet.yaml spells them) at small shapes."""
    g = torch.Generator().manual_seed(11)
    shapes = {"features.0": (16, 3, 5, 5), "features.3": (24, 16, 5, 5), "features.6": (32, 24, 3, 3),
              "features.8": (32, 32, 3, 3), "features.10": (32, 32, 3, 3), "classifier.1": (96, 288),
              "classifier.4": (96, 96), "classifier.6": (10, 96)}
    tensors = {}
    for module, shape in shapes.items():
        tensors[f"{module}.weight"] = torch.randn(*shape, generator=g)
        tensors[f"{module}.bias"] = torch.randn(shape[0], generator=g)
    return ParameterTree(tensors)


def test_alexnet_agp_schedule_applies(mini_alexnet):
    result = apply_schedule(load_schedule(DATA / "alexnet.schedule_agp.yaml"), mini_alexnet, "mini AlexNet")
    finals = {"features.3.weight": 0.62, "features.6.weight": 0.65, "features.8.weight": 0.43,
              "features.10.weight": 0.43, "classifier.1.weight": 0.91, "classifier.4.weight": 0.91,
              "classifier.6.weight": 0.75}
    assert set(result.masks) == set(finals)                  # conv1's pruner is commented out
    for name, final in finals.items():
        numel = result.tensors[name].numel()
        assert numel - int(torch.count_nonzero(result.tensors[name])) == int(final * numel), name
    assert result.epochs == 17


def test_alexnet_sensitivity_schedule_applies(mini_alexnet):
    before = {n: mini_alexnet.current(n).clone() for n in mini_alexnet.names}
    result = apply_schedule(load_schedule(DATA / "alexnet.schedule_sensitivity.yaml"), mini_alexnet, "mini AlexNet")
    assert result.epochs == 37 and len(result.steps) == 8 * 19       # 8 weights, epochs 0, 2, ..., 36
    w = before["classifier.1.weight"]
    assert torch.equal(result.masks["classifier.1.weight"], w.abs() > torch.std(w).item() * 0.875)


# --- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["features.module.0.weight", "module.features.0.weight", "features.0.weight"])
def test_data_parallel_component_is_ignored_wherever_it_stands(name):
    assert canonical_name(name) == "features.0.weight"


def test_alexnet_style_names_resolve_against_plain_ones(tiny_tree, schedule_file):
    path = schedule_file({"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1,
                                "final_sparsity": 0.5, "weights": ["features.module.0.weight",
                                                                   "module.classifier.1.weight"]}},
                         one_policy(starting_epoch=0, ending_epoch=4, frequency=1))
    result = apply_schedule(load_schedule(path), tiny_tree, "tiny")
    assert result.final_sparsity("features.0.weight") == pytest.approx(int(0.5 * 288) / 288)
    assert result.final_sparsity("classifier.1.weight") == pytest.approx(0.5)


def test_buffers_are_not_parameters():
    assert not is_parameter_name("module.bn1.running_mean")
    assert is_parameter_name("module.bn1.weight")


# --- each pruner class ---------------------------------------------------------------------------

def test_sparsity_level_pruner_truncates_and_prunes_ties():
    t = torch.tensor([0.1, -0.2, 0.2, 0.3, 0.4, 0.5, 0.6])
    # int(0.3 x 7) = 2: threshold = 2nd smallest magnitude = 0.2, and both 0.2s go
    mask = SparsityLevelPruning(0.3).compute_mask(t, torch.ones(7, dtype=torch.bool))
    assert mask.tolist() == [False, False, False, True, True, True, True]
    assert SparsityLevelPruning(0.1).compute_mask(t, torch.ones(7, dtype=torch.bool)).all()   # int(0.7) = 0


def test_level_pruner_with_default_and_policy_override(tiny_tree, schedule_file):
    path = schedule_file({"p": {"class": "SparsityLevelParameterPruner",
                                "levels": {"features.module.0.weight": 0.5, "*": 0.25}}},
                         [{"pruner": {"instance_name": "p"}, "epochs": [0]},
                          {"pruner": {"instance_name": "p", "args": {"levels": {"classifier.1.weight": 0.8}}},
                           "epochs": [1]}])
    result = apply_schedule(load_schedule(path), tiny_tree, "tiny")
    epoch0 = {s.parameter: s.zeros for s in result.steps if s.epoch == 0}
    assert epoch0 == {"features.0.weight": 144, "features.0.bias": 2, "classifier.1.weight": 50,
                      "classifier.1.bias": 2}
    epoch1 = {s.parameter: s.zeros for s in result.steps if s.epoch == 1}
    assert epoch1 == {"classifier.1.weight": 160}


def test_sensitivity_pruner_threshold_is_std_times_sensitivity(tiny_tree, schedule_file):
    w = tiny_tree.current("classifier.1.weight").clone()
    path = schedule_file({"p": {"class": "SensitivityPruner", "sensitivities": {"classifier.1.weight": 0.8}}},
                         one_policy(starting_epoch=0, ending_epoch=6, frequency=2))
    result = apply_schedule(load_schedule(path), tiny_tree, "tiny")
    expected = w.abs() > torch.std(w).item() * 0.8
    assert torch.equal(result.masks["classifier.1.weight"], expected)
    # the std is taken once, so repeating the policy changes nothing
    assert len({s.zeros for s in result.steps}) == 1 and len(result.steps) == 3


def test_magnitude_pruner_acts_on_every_parameter(tiny_tree, schedule_file):
    path = schedule_file({"p": {"class": "MagnitudeParameterPruner",
                                "thresholds": {"*": 0.5, "classifier.1.weight": 1.0}}}, one_policy())
    before = {n: tiny_tree.current(n).clone() for n in tiny_tree.names}
    result = apply_schedule(load_schedule(path), tiny_tree, "tiny")
    assert set(result.masks) == set(tiny_tree.names)
    assert torch.equal(result.masks["features.0.bias"], before["features.0.bias"].abs() > 0.5)
    assert torch.equal(result.masks["classifier.1.weight"], before["classifier.1.weight"].abs() > 1.0)


@pytest.mark.parametrize("cls, norm", [("L1RankedStructureParameterPruner", 1),
                                       ("L2RankedStructureParameterPruner", 2)])
def test_ranked_channels_by_norm(tiny_tree, schedule_file, cls, norm):
    w = tiny_tree.current("features.0.weight").clone()
    path = schedule_file({"p": {"class": cls, "group_type": "Channels", "desired_sparsity": 0.5,
                                "weights": ["features.0.weight"]}}, one_policy())
    result = apply_schedule(load_schedule(path), tiny_tree, "tiny")
    norms = torch.linalg.vector_norm(w.transpose(0, 1).reshape(4, -1), ord=norm, dim=1)
    kept = norms > norms.sort().values[1]                      # int(0.5 x 4) = 2 weakest go
    channel_kept = result.masks["features.0.weight"].any(dim=(0, 2, 3))
    assert torch.equal(channel_kept, kept) and int(kept.sum()) == 2


def test_ranked_rows_need_a_matrix_and_say_so(tiny_tree, schedule_file):
    path = schedule_file({"p": {"class": "L1RankedStructureParameterPruner", "group_type": "Rows",
                                "desired_sparsity": 0.5, "weights": ["features.0.weight"]}}, one_policy())
    with pytest.raises(ConfigError) as err:
        apply_schedule(load_schedule(path), tiny_tree, "tiny")
    assert err.value.field == "pruners.p" and "rows need a 2-D" in err.value.message


def test_leader_imposes_its_filters(schedule_file):
    g = torch.Generator().manual_seed(5)
    tree = ParameterTree({"a.weight": torch.randn(6, 2, 3, 3, generator=g),
                          "b.weight": torch.randn(6, 3, 1, 1, generator=g)})
    path = schedule_file({"p": {"class": "L2RankedStructureParameterPruner_AGP", "initial_sparsity": 0.2,
                                "final_sparsity": 0.5, "group_type": "Filters", "group_dependency": "Leader",
                                "weights": ["a.weight", "b.weight"]}},
                         one_policy(starting_epoch=0, ending_epoch=3, frequency=1))
    result = apply_schedule(load_schedule(path), tree, "two")
    a = result.masks["a.weight"].any(dim=(1, 2, 3))
    b = result.masks["b.weight"].any(dim=(1, 2, 3))
    assert torch.equal(a, b) and int((~a).sum()) == 3


def test_ranked_method_is_a_torch_pruning_method():
    module = torch.nn.Linear(8, 4)
    RankedStructurePruning.apply(module, "weight", sparsity=0.5, group=GroupType.ROWS, norm=Norm.L1)
    assert int((module.weight.abs().sum(dim=0) == 0).sum()) == 4
    assert hasattr(module, "weight_orig") and hasattr(module, "weight_mask")
    ThresholdPruning.apply(module, "bias", threshold=10.0)
    assert int(torch.count_nonzero(module.bias)) == 0


# --- errors: one line, naming the file and the field ------------------------------------------

@pytest.mark.parametrize("pruners, policies, field, words", [
    ({"p": {"class": "BernoulliFilterPruner", "weights": ["a"]}}, one_policy(), "pruners.p.class",
     "not a pruner this simulator applies"),
    ({"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.5, "final_sparsity": 0.2, "weights": ["x"]}},
     one_policy(), "pruners.p", "must be above initial_sparsity"),
    ({"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.2, "weights": ["x"],
            "sparsity": 0.3}}, one_policy(), "pruners.p.sparsity", "unknown key (allowed: class, initial_sparsity"),
    ({"p": {"class": "MagnitudeParameterPruner", "thresholds": {"x": 0.1}}}, one_policy(), "pruners.p",
     "default '*'"),
    ({"p": {"class": "L1RankedStructureParameterPruner", "group_type": "Blocks", "desired_sparsity": 0.5,
            "weights": ["x"]}}, one_policy(), "pruners.p.group_type", "Blocks"),
    ({"p": {"class": "SparsityLevelParameterPruner", "levels": {"x": 0.5}}}, one_policy("q"),
     "policies[0].pruner.instance_name", "'q' is not defined under pruners"),
    ({"p": {"class": "SparsityLevelParameterPruner", "levels": {"x": 0.5}}},
     [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 4}], "policies[0]",
     "missing frequency"),
    ({"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.2, "weights": ["x"]}},
     one_policy(), "policies[0]", "span above 0"),
    ({"p": {"class": "SparsityLevelParameterPruner", "levels": {"x": 1.5}}}, one_policy(), "pruners.p.levels.x",
     "less than or equal to 1"),
])
def test_schedule_errors(schedule_file, pruners, policies, field, words):
    with pytest.raises(ConfigError) as err:
        load_schedule(schedule_file(pruners, policies))
    assert err.value.field == field, str(err.value)
    assert words in err.value.message, str(err.value)
    assert err.value.source.endswith("schedule.yaml") and "\n" not in str(err.value)


def test_unsupported_version(write_yaml):
    with pytest.raises(ConfigError) as err:
        load_schedule(write_yaml("s.yaml", {"version": 2, "policies": []}))
    assert err.value.field == "version"


def test_weight_matching_nothing_is_named(tiny_tree, schedule_file):
    path = schedule_file({"fc": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.5,
                                 "weights": ["classifier.1.weight", "classifier.9.weight"]}},
                         one_policy("fc", starting_epoch=0, ending_epoch=4, frequency=1))
    with pytest.raises(ConfigError) as err:
        apply_schedule(load_schedule(path), tiny_tree, "tiny.yaml")
    assert err.value.field == "pruners.fc.weights[1]"
    assert "'classifier.9.weight' matches no parameter of tiny.yaml" in err.value.message
