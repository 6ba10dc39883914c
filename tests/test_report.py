"""The terminal report names what ran: the least-squares baseline is linear regression, its metric R²."""
import report


def summary_of(loss: str) -> dict:
    run = {"final_loss": 0.25, "final_accuracy": 0.5, "diverged": False}
    plane_run = {"on_surface_share": 1.0, "drawn": "surface", "residual_mean": 0.0, "gap_max": 0.0}
    return {"model": {"key": "mlp", "loss": loss}, "runs": {"logistic": [run], "mlp": [run, run]},
            "planes": {"logistic": {"runs": {"seed 0": plane_run}}, "mlp": {"runs": {"seed 0": plane_run}},
                       "optimizers": {"runs": {"Adam lr=0.05": plane_run}}, "minima": {"runs": {"m": plane_run}}},
            "timings_s": {"total": 1.0}}


def printed(summary, tmp_path, capsys) -> list:
    report.print_report(summary, [], tmp_path)
    return [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_regression_rows_say_linear_regression_and_r2(tmp_path, capsys):
    lines = printed(summary_of("mse"), tmp_path, capsys)
    assert lines[0][:4] == ["linear", "regression", "final", "loss"] and "R²" in lines[0]
    assert lines[1][:3] == ["MLP", "final", "loss"] and "over 2 seeds" in " ".join(lines[1])
    assert "over 1 seed:" in " ".join(lines[0])
    planes = [line for line in lines if line[0] == "plane"]
    assert [line[1:3] for line in planes] == [["linear", "regression"], ["MLP", "seed"], ["optimisers", "Adam"]]
    assert not any("logistic" in line or "accuracy" in line for line in lines)
    assert lines[-1][:2] == ["summary.json", "only,"]  # nothing else written: not "1 files"


def test_classification_rows_say_logistic_regression_and_accuracy(tmp_path, capsys):
    lines = printed(summary_of("bce"), tmp_path, capsys)
    assert lines[0][:2] == ["logistic", "regression"] and "accuracy" in lines[0] and "R²" not in lines[0]


def test_optimiser_table_keeps_a_diverged_runs_huge_numbers_in_their_columns(tmp_path, capsys):
    summary = summary_of("bce")
    huge = {"initial_loss": 0.6834, "final_loss": 3.1e17, "improvement_pct": -4.5e19, "path_length": 9.512e4,
            "straight_distance": 7.105e4, "efficiency": 0.75, "diverged": True}
    calm = {"initial_loss": 0.6834, "final_loss": 0.3252, "improvement_pct": 52.41, "path_length": 2.279,
            "straight_distance": 2.127, "efficiency": 0.93}
    summary["optimizers"] = {"GD+momentum lr=20": huge, "GD lr=0.5": calm}
    lines = printed(summary, tmp_path, capsys)
    header = next(line for line in lines if line[0] == "optimiser")
    rows = {line[0]: line for line in lines if line[0].startswith("GD")}
    assert header == ["optimiser", "initial", "final", "improv.", "path", "straight", "effic."]
    assert rows["GD+momentum"][-6:] == ["0.6834", "3.1e+17", "-4.5e+19%", "9.512e+04", "7.105e+04", "0.75"]
    assert rows["GD+momentum"][2] == "(diverged)" and rows["GD"][-6:] == ["0.6834", "0.3252", "52.41%", "2.279",
                                                                         "2.127", "0.93"]
