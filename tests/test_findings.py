"""Headline findings follow the run's numbers, round them for reading and skip what is missing."""
import copy

import pytest

import findings


def summary_a() -> dict:
    run = lambda loss, acc: {"label": "seed 0", "final_loss": loss, "final_accuracy": acc}  # noqa: E731
    curv = lambda peak, line, lr: {"lambda_max_peak": peak, "stability_line": line, "lr": lr,  # noqa: E731
                                   "lambda_min_lowest": -0.2}
    return {
        "model": {"key": "mlp", "kind": "mlp", "loss": "bce"},
        "runs": {"mlp": [run(0.05, 0.98), run(0.07, 0.96)], "logistic": [run(0.31, 0.88)]},
        "curvature": {"mlp": {"lambda_max_peak": 9.5, "lambda_min_lowest": -0.42, "stability_line": 10.0,
                              "stability_label": "2/lr = 10"},
                      "logistic": {"lambda_max_peak": 0.9, "lambda_min_lowest": -2.8e-7},
                      "lr_sensitivity": {"SGD lr=0.05": curv(3.1, 40.0, 0.05), "SGD lr=0.5": curv(3.9, 4.0, 0.5)}},
        "optimizers": {"SGD": {"final_loss": 0.2, "efficiency": 0.9, "diverged": False},
                       "Adam": {"final_loss": 0.01, "efficiency": 0.35, "diverged": False},
                       "SGD+momentum": {"final_loss": None, "efficiency": None, "diverged": True}},
        "planes": {"mlp": {"runs": {"seed 0": {"residual_mean": 0.031, "drawn": "surface"}}},
                   "optimizers": {"runs": {"SGD": {"residual_mean": 0.02, "drawn": "surface"},
                                           "Adam": {"residual_mean": 0.45, "drawn": "shadow"}}}},
        "mode_connectivity": {"seed 0 - seed 1": {"barrier": 0.4, "end_losses": [0.05, 0.07], "max_loss": 0.46},
                              "seed 0 - seed 2": {"barrier": 0.02, "end_losses": [0.05, 0.06], "max_loss": 0.08}},
    }


def text_of(summary) -> str:
    return "\n".join(findings.headline_findings(summary))


@pytest.mark.parametrize("x, expected", [(0.123456, "0.123"), (12.3456, "12.3"), (1.0, "1"), (2.5, "2.5"),
                                         (1234.5, "1,234"), (100.4, "100"), (0.0123456, "0.0123"),
                                         (-2.8e-7, "-2.8e-7"), (3.04e-5, "3e-5"), (0.0, "0"), (-0.0, "0"),
                                         (None, "n/a"), (float("nan"), "n/a"), (float("inf"), "n/a"), (7, "7")])
def test_readable_rounds_for_reading(x, expected):
    assert findings.readable(x) == expected


@pytest.mark.parametrize("lam_min, lam_max, expected", [(-2.8e-7, 0.9, "≈ 0 (convex)"), (0.0, 3.0, "≈ 0 (convex)"),
                                                        (-0.42, 9.5, "-0.42"), (-1e-3, 0.9, "-0.001"), (-4e-4, 0.9, "≈ 0 (convex)"),
                                                        (-2e-3, 0.9, "-0.002")])
def test_eigen_text_calls_rounding_noise_convex(lam_min, lam_max, expected):
    assert findings.eigen_text(lam_min, lam_max) == expected


def test_convex_means_within_the_eigensolvers_error():
    import eigensolver
    assert findings.CONVEX_TOL >= eigensolver.END_TOL  # a λmin the solver cannot tell from 0 is never called non-convex


def test_findings_state_the_run_numbers():
    lines = findings.headline_findings(summary_a())
    assert 3 <= len(lines) <= 6
    text = "\n".join(lines)
    assert "the MLP to 0.06 (accuracy 97%), mean of 2 seeds" in text and "logistic regression to 0.31" in text
    assert "logistic regression ≈ 0 (convex)" in text and "the MLP -0.42 (non-convex)" in text
    assert "Adam ended lowest at loss 0.01 by the least straight path (efficiency 0.35 against 0.9:" in text
    assert "SGD+momentum diverged" in text
    assert "reached the stability line 2/lr at lr 0.5 and stayed below it elsewhere" in text
    assert "The MLP's path lies 3.1% off its PCA plane on average" in text
    assert "Adam on the optimiser plane (45% off)" in text
    assert "rises at most 0.4 above its ends (seed 0 - seed 1" in text and "separate basins" in text


def test_findings_change_when_the_numbers_change():
    b = copy.deepcopy(summary_a())
    b["optimizers"]["SGD"]["final_loss"] = 0.001  # SGD now ends lowest
    b["curvature"]["lr_sensitivity"]["SGD lr=0.5"]["lambda_max_peak"] = 2.0  # no run reaches 2/lr
    b["curvature"]["logistic"]["lambda_min_lowest"] = -0.3  # no longer convex
    b["planes"]["optimizers"]["runs"]["Adam"]["drawn"] = "surface"
    b["mode_connectivity"] = {"seed 0 - seed 1": {"barrier": 0.001, "end_losses": [0.05, 0.07]}}
    a_text, b_text = text_of(summary_a()), text_of(b)
    assert a_text != b_text
    assert "SGD ended lowest at loss 0.001 by the straightest path (efficiency 0.9 against 0.35:" in b_text
    assert "stayed below the stability line 2/lr at every learning rate" in b_text
    assert "logistic regression -0.3 (non-convex)" in b_text
    assert "every run of the other planes lies on its plane" in b_text and "shadow" not in b_text
    assert "linearly connected" in b_text


def test_missing_keys_drop_only_their_finding():
    assert findings.headline_findings({}) == []
    partial = summary_a()
    del partial["optimizers"], partial["mode_connectivity"]
    partial["curvature"] = {"mlp": {"lambda_max_peak": None}}  # a skipped stage leaves nulls
    text = text_of(partial)
    assert "ended lowest" not in text and "barrier" not in text and "λmax" not in text
    assert "Training loss fell" in text and "PCA plane" in text


def test_stability_falls_back_to_the_main_run_without_the_lr_study():
    s = summary_a()
    del s["curvature"]["lr_sensitivity"]
    assert "peaked at 9.5, 95% of its stability line 2/lr = 10" in text_of(s)


def test_findings_module_draws_nothing():
    source = open(findings.__file__, encoding="utf-8").read()
    assert not any(f"import {name}" in source for name in ("matplotlib", "plotly", "torch", "numpy"))


def test_number_tables_round_the_numbers_and_skip_missing_sections():
    tables = findings.number_tables(summary_a())
    assert ("mlp seed 0", "loss 0.05, accuracy 98%") in tables["final loss and accuracy"]
    assert ("optimizers / Adam", "residual 45%, shadow") in tables["planes"]
    assert any(name == "logistic" and "λmin lowest ≈ 0 (convex)" in text for name, text in tables["curvature"])
    assert ("seed 0 - seed 1", "barrier 0.4, highest loss 0.46") in tables["barriers between minima"]
    assert findings.number_tables({"runs": {"mlp": []}}) == {}


def test_a_cnn_run_is_read_under_its_own_key_and_random_planes_are_left_out():
    s = copy.deepcopy(summary_a())
    s["model"] = {"key": "cnn", "kind": "cnn"}
    for section in ("runs", "planes", "curvature"):
        s[section]["cnn"] = s[section].pop("mlp")
    s["planes"]["plane_choice/random"] = {"kind": "random", "runs": {"seed 0": {"residual_mean": 0.9,
                                                                               "drawn": "shadow"}}}
    s["planes"]["plane_choice/filter_pca"] = {"runs": {"seed 0": {"residual_mean": 0.61, "drawn": "partial"}}}
    text = text_of(s)
    assert "the CNN to 0.06" in text and "the CNN -0.42 (non-convex)" in text
    assert "The CNN's path lies 3.1% off its PCA plane" in text
    assert "seed 0 on the filter-normalised PCA plane (61% off, partly)" in text and "random" not in text


def test_shadows_are_counted_per_plane_when_several_leave_it():
    s = copy.deepcopy(summary_a())
    s["planes"]["optimizers"]["runs"]["SGD"]["drawn"] = "partial"
    text = text_of(s)
    assert "drawn as dashed shadows: 2 of 2 runs on the optimiser plane" in text


def test_directness_ranks_a_path_against_the_others():
    runs = {"A": {"efficiency": 0.6}, "B": {"efficiency": 0.8}, "C": {"efficiency": 0.5}, "D": {"efficiency": None}}
    assert findings.directness("A", runs).startswith("the second straightest path (efficiency 0.6 against 0.8, 0.5:")
    assert findings.directness("B", runs).startswith("the straightest path")
    assert findings.directness("C", runs).startswith("the least straight path")
    assert findings.directness("A", {"A": {"efficiency": 0.6}, "D": {"efficiency": None}}) == \
        "a path of efficiency 0.6 (straight distance / path length)"  # nothing to rank it against


def test_a_peak_far_over_the_stability_line_is_said_to_go_past_it():
    b = copy.deepcopy(summary_a())  # lr 0.05: peak 3.1 under its line 40; lr 0.5: 3.9, at its line 4
    b["curvature"]["lr_sensitivity"]["SGD lr=0.05"]["lambda_max_peak"] = 280.0
    assert findings.stability_finding(b).startswith(
        "λmax reached the stability line 2/lr at lr 0.5 and went past it at lr 0.05 (7x the line) (lr 0.05: peak")
    b["curvature"]["lr_sensitivity"]["SGD lr=0.5"]["lambda_max_peak"] = 1.0
    assert findings.stability_finding(b).startswith(
        "λmax went past the stability line 2/lr at lr 0.05 (7x the line) and stayed below it elsewhere (")


def test_plane_keys_read_as_names():
    assert [findings.plane_name(k) for k in ("optimizers", "lr_sensitivity", "seed 3", "mlp")] == \
        ["optimiser", "learning-rate", "seed 3's own", "mlp"]


def test_the_barrier_finding_says_when_its_pair_is_one_of_many():
    b = copy.deepcopy(summary_a())
    b["mode_connectivity"] = {f"seed {i} - seed {j}": {"barrier": 0.01 * (i + j), "end_losses": [0.2, 0.2]}
                              for i in range(4) for j in range(i + 1, 4)}
    assert "(seed 2 - seed 3, the highest of all 6 pairs, end losses about 0.2)" in findings.barrier_finding(b)
    for pair in ("seed 2 - seed 3", "seed 1 - seed 3", "seed 0 - seed 3"):  # three seeds: the figure's pairs
        del b["mode_connectivity"][pair]
    assert "(seed 1 - seed 2, end losses" in findings.barrier_finding(b)


@pytest.mark.parametrize("extra, words", [(1, "and 1 more plane."), (2, "and 2 more planes.")])
def test_planes_beyond_the_listed_ones_are_counted_in_good_english(extra, words):
    s = copy.deepcopy(summary_a())
    for k in range(findings.SHADOWS_LISTED - 1 + extra):  # the optimizers plane has a shadow already
        s["planes"][f"seed {k + 1}"] = {"runs": {f"seed {k + 1}": {"residual_mean": 0.2, "drawn": "partial"}}}
    assert findings.plane_finding(s).endswith(words)
    assert "seed 1 on its own plane (20% off, partly)" in findings.plane_finding(s)


def test_a_regression_run_reads_r2_and_linear_regression():
    """Squared error: the second number is R² (negative when worse than the mean), the baseline linear regression."""
    summary = summary_a()
    summary["model"]["loss"] = "mse"
    summary["runs"]["logistic"] = [{"label": "seed 0", "final_loss": 0.385, "final_accuracy": -0.12}]
    text = text_of(summary)
    assert "linear regression to 0.385 (R² -0.12)" in text and "logistic regression" not in text
    assert "accuracy" not in text and "the MLP to 0.06 (R² 0.97), mean of 2 seeds" in text
    tables = findings.number_tables(summary)
    assert ("logistic seed 0", "loss 0.385, R² -0.12") in tables["final loss and R²"]
    classification = findings.number_tables(summary_a())["final loss and accuracy"]
    assert ("logistic seed 0", "loss 0.31, accuracy 88%") in classification


def test_a_run_that_starts_over_its_line_is_not_said_to_reach_it():
    """breast_cancer: λmax 1.3 at initialisation over the line 2/lr = 1 at lr 2, then only falling."""
    b = copy.deepcopy(summary_a())
    runs = b["curvature"]["lr_sensitivity"]
    runs["SGD lr=0.05"]["lambda_max_start"] = 1.0  # climbed from 1 to its peak 3.1: not at the start
    runs["SGD lr=0.5"].update(lambda_max_peak=4.2, lambda_max_start=4.2)  # 1.05x the line, at initialisation
    text = findings.stability_finding(b)
    assert "reached" not in text and text.startswith(
        "λmax was already at or over the stability line 2/lr from initialisation at lr 0.5, never climbing "
        "higher and stayed below it elsewhere (lr 0.05: peak 3.1 vs 40; lr 0.5: peak 4.2 vs 4).")
    runs["SGD lr=0.5"]["lambda_max_start"] = 2.0  # climbed from 2 to 4.2: it reached the line
    assert findings.stability_finding(b).startswith("λmax reached the stability line 2/lr at lr 0.5 and stayed")
