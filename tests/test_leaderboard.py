"""Leaderboard numbers are checked against an independent computation from the records."""

from __future__ import annotations

import html
import html.parser
import json
import re
import shutil
import subprocess

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks.leaderboard import (
    build_leaderboard, format_estimate, progress_notes, to_html, to_markdown, write_leaderboard,
)
from benchmarks.records import RunRecord, append_record, git_commit
from benchmarks.stats import bootstrap, iqm, mean_over_groups, normalized_auc
from benchmarks.plots import render_figures

ENVS = ["llm_gym/Arithmetic-v0", "llm_gym/Copy-v0", "llm_gym/Sort-v0"]
LEARNERS = {"ppo": 0.8, "grpo": 0.6, "reinforce": 0.4}  # final gold reward each learner drifts towards


def synthetic_records(seeds: int = 5, rng_seed: int = 0) -> list[RunRecord]:
    """Learners with noisy rising curves plus best-of-n (n = 2, 8, 32) with finals only."""
    rng = np.random.default_rng(rng_seed)
    records = []
    for env_i, env in enumerate(ENVS):
        for algo, target in LEARNERS.items():
            for seed in range(seeds):
                steps = np.arange(0, 1100, 100) + (seed * 7 if algo == "grpo" else 0)  # misaligned log steps
                rise = 1 - np.exp(-steps / 400)
                gold = 0.1 + (target - 0.05 * env_i) * rise + rng.normal(0, 0.03, len(steps))
                kl = 2.0 * rise * (1 + 0.2 * rng.random())
                proxy = gold + 0.3 * kl
                curve = [{"step": float(s), "objective/gold_reward": float(g), "objective/reward": float(p),
                          "objective/kl": float(k)} for s, g, p, k in zip(steps, gold, proxy, kl)]
                final = {"objective/gold_reward": float(gold[-1] + rng.normal(0, 0.02)),
                         "objective/reward": float(proxy[-1]), "objective/kl": float(kl[-1])}
                records.append(_record(algo, env, seed, curve, final, {"budget": 1000}, 10 + rng.random()))
        for n in (2, 8, 32):
            kl_bon = float(np.log(n) - (n - 1) / n)
            for seed in range(seeds):
                final = {"objective/gold_reward": 0.1 + 0.1 * np.log2(n) + rng.normal(0, 0.02),
                         "objective/reward": 0.1 + 0.15 * np.log2(n), "objective/kl": kl_bon}
                records.append(_record(f"best_of_n_{n}", env, seed, [], final, {"n": n}, 2.0))
    return records


def _record(algo, env, seed, curve, final, config, wall_s) -> RunRecord:
    return RunRecord(algo=algo, env_id=env, seed=seed, config={**config, "env_kwargs": {"env": env}},
                     versions={"python": "3.11", "torch": "2.13.0"}, git_commit="abc123",
                     hardware={"cpu": "test cpu", "usable_cores": 2, "gpu": None},
                     curve=curve, final=final, wall_s=wall_s)


NUMBER_CI = re.compile(r"^(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]$")


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Section title -> rows as {header: cell} parsed back from the Markdown."""
    tables, title, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("## "):
            title, header = line[3:], None
        elif line.startswith("|") and title and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
                tables[title] = []
            else:
                tables[title].append(dict(zip(header, cells)))
    return tables


class _HTMLTables(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.title, self.in_cell, self.row, self.in_h2 = {}, None, False, None, False
        self.header = None

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.in_h2, self.title = True, ""
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.in_cell = True
            self.row.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
        elif tag in ("td", "th"):
            self.in_cell = False
        elif tag == "tr":
            if self.title not in self.tables:
                self.tables[self.title], self.header = [], self.row
            else:
                self.tables[self.title].append(dict(zip(self.header, self.row)))

    def handle_data(self, data):
        if self.in_h2:
            self.title += data
        elif self.in_cell:
            self.row[-1] += data


def independent(records, algo, envs, metric, reps=20000):
    """Mean over envs of per-env means, IQM of pooled runs (scipy), and a 20k-resample stratified
    bootstrap written here from scratch with its own RNG, to compare against the leaderboard's 2k."""
    groups = [np.array([r.final[metric] for r in records if r.algo == algo and r.env_id == e]) for e in envs]
    mean = np.mean([g.mean() for g in groups])
    trimmed = scipy_stats.trim_mean(np.concatenate(groups), 0.25)
    rng = np.random.default_rng(12345)
    res = [rng.choice(g, size=(reps, len(g)), replace=True) for g in groups]  # one resample per row
    draws_mean = np.mean([r.mean(axis=1) for r in res], axis=0)
    draws_iqm = scipy_stats.trim_mean(np.concatenate(res, axis=1), 0.25, axis=1)
    return (mean, *np.percentile(draws_mean, [2.5, 97.5])), (trimmed, *np.percentile(draws_iqm, [2.5, 97.5]))


def parse_ci(cell: str) -> tuple[float, float, float]:
    match = NUMBER_CI.match(cell)
    assert match, f"cell {cell!r} is not 'point [low, high]'"
    return tuple(float(x) for x in match.groups())


def test_markdown_and_html_numbers_match_an_independent_computation():
    records = synthetic_records()
    board = build_leaderboard(records)
    md_tables = markdown_tables(to_markdown(board))
    parser = _HTMLTables()
    parser.feed(to_html(board))
    assert parser.tables == md_tables  # the page and the Markdown show the same cells
    assert {"Overall", *ENVS} <= set(md_tables)

    sections = [("Overall", ENVS)] + [(env, [env]) for env in ENVS]
    for title, envs in sections:
        rows = {row["Algorithm"]: row for row in md_tables[title]}
        assert set(rows) == {*LEARNERS, "best_of_n_2", "best_of_n_8", "best_of_n_32"}
        for algo, row in rows.items():
            for metric, name in (("objective/gold_reward", "Gold reward"), ("objective/reward", "Proxy reward")):
                (mean, mlo, mhi), (trim, ilo, ihi) = independent(records, algo, envs, metric)
                point, low, high = parse_ci(row[f"{name}, mean"])
                assert point == pytest.approx(mean, abs=6e-4)
                # Bootstrap percentiles from 2k vs 20k resamples: agree to Monte-Carlo error (a few % of the spread).
                assert low == pytest.approx(mlo, abs=0.1 * (mhi - mlo) + 1e-3)
                assert high == pytest.approx(mhi, abs=0.1 * (mhi - mlo) + 1e-3)
                point, low, high = parse_ci(row[f"{name}, IQM"])
                assert point == pytest.approx(trim, abs=6e-4)
                assert low == pytest.approx(ilo, abs=0.1 * (ihi - ilo) + 1e-3)
                assert high == pytest.approx(ihi, abs=0.1 * (ihi - ilo) + 1e-3)
            runs = [r for r in records if r.algo == algo and r.env_id in envs]
            kl_point = parse_ci(row["Final KL, mean"])[0]
            assert kl_point == pytest.approx(np.mean([np.mean([r.final["objective/kl"] for r in runs if r.env_id == e]) for e in envs]), abs=6e-4)
            assert float(row["Wall time per run (s)"]) == pytest.approx(np.mean([r.wall_s for r in runs]), abs=0.06)
            auc_cell = row["Sample efficiency (gold AUC)"]
            if algo.startswith("best_of_n"):
                assert auc_cell == "—"  # no learning curve, no area
            else:
                by_env = [[np.trapezoid([p["objective/gold_reward"] for p in r.curve], [p["step"] for p in r.curve])
                           / (r.curve[-1]["step"] - r.curve[0]["step"]) for r in runs if r.env_id == e] for e in envs]
                assert parse_ci(auc_cell)[0] == pytest.approx(np.mean([np.mean(a) for a in by_env]), abs=6e-4)
        counts = {a: int(r["Runs"]) for a, r in rows.items()}
        assert set(counts.values()) == {5 * len(envs)}
    # Rows are ordered best first by mean gold reward.
    golds = [parse_ci(r["Gold reward, mean"])[0] for r in md_tables["Overall"]]
    assert golds == sorted(golds, reverse=True)


def test_iqm_matches_scipy_and_bootstrap_is_stratified_and_seeded():
    rng = np.random.default_rng(1)
    for n in (1, 3, 4, 5, 8, 13):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))
    groups = [np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0])]
    # Stratified resampling keeps each env's runs within that env: constant groups -> a zero-width CI.
    est = bootstrap(groups, mean_over_groups)
    assert (est.point, est.low, est.high) == (0.5, 0.5, 0.5)
    data = [rng.normal(size=6)]
    assert bootstrap(data, mean_over_groups, seed=3) == bootstrap(data, mean_over_groups, seed=3)
    assert np.isnan(bootstrap([np.array([])], mean_over_groups).point)


def test_normalized_auc_is_the_average_height_of_the_curve():
    assert normalized_auc([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert normalized_auc([10, 0, 20], [1.0, 0.0, 1.0]) == pytest.approx(0.75)  # sorted by step first
    assert normalized_auc([5], [0.3]) == pytest.approx(0.3)
    assert np.isnan(normalized_auc([], []))


def test_missing_metrics_show_a_dash_and_variants_get_their_own_rows():
    base = synthetic_records(seeds=2)
    runs = [r for r in base if r.algo == "ppo"]
    old = [RunRecord(**{**r.__dict__, "config": {**r.config, "budget": 500}}) for r in runs]
    no_gold = _record("sb3_ppo", ENVS[0], 0, [], {"objective/reward": 0.5}, {}, 1.0)
    board = build_leaderboard(runs + old + [no_gold], reps=200)
    labels = [row.label for row in board.overall]
    assert len([label for label in labels if label.startswith("ppo@")]) == 2  # two settings of ppo
    table = markdown_tables(to_markdown(board))[ENVS[0]]
    sb3 = next(row for row in table if row["Algorithm"] == "sb3_ppo")
    assert sb3["Gold reward, mean"] == "—" and sb3["Proxy reward, mean"].startswith("0.500")
    assert table[-1]["Algorithm"] == "sb3_ppo"  # rows without a gold reward sort last


def test_write_leaderboard_writes_self_contained_page_and_plots(tmp_path):
    records_path = tmp_path / "records.jsonl"
    for record in synthetic_records(seeds=3):
        append_record(records_path, record)
    paths = write_leaderboard(records_path, tmp_path / "board", reps=300)
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)  # nothing loaded from outside the file
    assert page.count('<a href="#') == page.count("<h2 id=")  # the contents link every section
    assert "Overall" in paths["markdown"].read_text()
    assert f"rendered from these records by the code at commit {git_commit()}" in paths["markdown"].read_text()
    for name in ("Learning curves", "Reward-KL frontier", "Over-optimisation", "Performance profiles"):
        assert paths[name].read_bytes().startswith(b"\x89PNG")


def test_the_page_warns_when_the_suites_budget_check_failed_and_gives_stage_times(tmp_path):
    """progress.json beside the records: below 90% of the gain at twice the budget is a red WARNING naming the
    algorithms; at or above it the check is an ordinary line; the stages' wall times are summed per stage."""
    records_path = tmp_path / "records.jsonl"
    for record in synthetic_records(seeds=3):
        append_record(records_path, record)
    evidence = {"ppo": {"board_budget": 8192, "tuning_budget": 16384, "gain_reached": 0.68},
                "grpo": {"board_budget": 8192, "tuning_budget": 16384, "gain_reached": 0.95},
                "sb3-ppo": {"board_budget": 8192, "tuning_budget": 16384, "gain_reached": None}}
    stages = {"prepare/prep0/count": {"wall_s": 60.0}, "prepare/prep1/count": {"wall_s": 60.0},
              "tune": {"wall_s": 2700.0}, "grid/verifier/prep0": {"wall_s": 1800.0}}
    (tmp_path / "progress.json").write_text(json.dumps({"stages": stages, "budget_evidence": evidence}))
    paths = write_leaderboard(records_path, tmp_path / "board", reps=300)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    warning = ("WARNING: not converged by the protocol's rule (below 90%: ppo); these are fixed-budget results at "
               "8192 samples per RL run. budget check on the tuning env: share of the gold gain made by 16384 samples "
               "that each algorithm had reached at the board's 8192: ppo 68%, grpo 95%")
    assert f"- {warning}" in markdown and f"<li class=warn>{html.escape(warning)}</li>" in page
    assert "wall time per suite stage (2 workers): prepare 2 min, tune 45 min, grid/verifier/prep0 30 min; 1.3 h in all" in markdown
    assert progress_notes({"budget_evidence": {"ppo": {**evidence["ppo"], "gain_reached": 0.9}}})[0].startswith(
        "budget check on the tuning env")
    assert "Tuning and budget evidence" not in markdown  # no tuning records beside these: no tuning figure
    tuning = tmp_path / "tuning" / "records.jsonl"
    for record in synthetic_records(seeds=2):
        if record.algo in LEARNERS:
            append_record(tuning, RunRecord(**{**record.__dict__, "algo": f"{record.algo}@lr*1", "env_id": ENVS[1]}))
    paths = write_leaderboard(records_path, tmp_path / "board", reps=300)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "## Tuning and budget evidence" in markdown and paths["Tuning and budget evidence"].read_bytes()[:4] == b"\x89PNG"
    assert markdown.index("## Tuning and budget evidence") < markdown.index("## Overall")
    assert '<a href="#tuning">' in page and page.count('<a href="#') == page.count("<h2 id=")


def _tuning_run(label: str, factor: float, seed: int, gold: list[float] | None) -> RunRecord:
    curve = [{"step": 100.0 * i, **({"objective/gold_reward": g} if gold else {"loss": g})}
             for i, g in enumerate(gold or [0.5, 0.4, 0.3])]
    return _record(f"{label}@lr*{factor:g}", "llm_gym/Copy-v0", seed, curve, {}, {}, 1.0)


def test_tuning_curves_draw_every_factor_the_chosen_one_thick_and_the_board_budget():
    from benchmarks.plots import tuning_curves

    records = [_tuning_run(label, f, seed, [0.1, 0.1 + f / 10 + seed / 100, 0.2 + f / 10])
               for label in ("ppo", "grpo") for f in (0.3, 1.0, 3.0) for seed in (0, 1)]
    records += [_tuning_run("dpo", f, 0, None) for f in (0.3, 1.0)]  # logs no gold curve: no panel
    fig = tuning_curves(records, chosen={"ppo": 3.0, "grpo": 1.0}, budgets={"ppo": 100, "grpo": 100}, window=1)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["grpo (× 1 chosen, thick)", "ppo (× 3 chosen, thick)"]
    for ax, chosen in zip(panels, ("learning rate × 1", "learning rate × 3")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"learning rate × 0.3", "learning rate × 1", "learning rate × 3", "board budget"}
        assert lines[chosen].get_linewidth() > max(l.get_linewidth() for k, l in lines.items() if k != chosen)
        assert list(lines["board budget"].get_xdata()) == [100, 100]
        assert lines["learning rate × 3"].get_ydata()[-1] == pytest.approx(0.5)  # mean of the seeds' last points
    plt.close(fig)
    assert tuning_curves([_tuning_run("dpo", 1.0, 0, None)], {}, {}) is None


def test_empty_records_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no results records in .*records.jsonl"):
        write_leaderboard(tmp_path / "records.jsonl", tmp_path / "out")


def test_figures_render_without_kl_or_curves():
    records = [_record("ppo", ENVS[0], s, [], {"objective/gold_reward": 0.1 * s}, {}, 1.0) for s in range(3)]
    figures = render_figures(records)
    assert set(figures) == {"Reward-KL frontier", "Performance profiles"}  # no curve: none drawn


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine (apt-get install chromium)")
def test_the_page_renders_in_headless_chromium_with_the_records_numbers(tmp_path):
    records_path = tmp_path / "records.jsonl"
    for record in synthetic_records(seeds=3):
        append_record(records_path, record)
    paths = write_leaderboard(records_path, tmp_path / "board", reps=300)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]
    url = paths["html"].resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    parser = _HTMLTables()
    parser.feed(dom)  # the tables as the browser parsed them
    assert parser.tables == markdown_tables(paths["markdown"].read_text())
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    pixels = plt.imread(shot)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels[..., :3].std() > 0.05  # text and tables drawn, not a blank page


def _tagged(records, track):
    return [RunRecord(**{**r.__dict__, "config": {**r.config, "tags": {"track": track, "prep": r.seed % 2}}})
            for r in records]


def test_tracks_are_tabulated_apart_with_probability_of_improvement_and_fits():
    """Two preparations (seed % 2): intervals resample preparations, then seeds (checked against stats)."""
    from benchmarks.leaderboard import GAIN_HEADER, POI_HEADER, build_tracks
    from benchmarks.stats import difference_of_means, probability_of_improvement

    base = synthetic_records(seeds=4)
    records = _tagged(base, "learned-rm") + _tagged(base, "verifier")
    boards = build_tracks(records, reps=300, start="best_of_n_2", reference="best_of_n")
    assert list(boards) == ["verifier", "learned-rm"]  # the protocol's order
    tables = markdown_tables(to_markdown(boards))
    title = "Verifier track: Overall"
    assert {"Overall", *ENVS} & set(tables) == set() and title in tables
    rows = {r["Algorithm"]: r for r in tables[title]}

    def by_env(algo, value):
        return [np.array([value(r) for r in base if r.algo == algo and r.env_id == e]) for e in ENVS]

    gold, prep = (lambda r: r.final["objective/gold_reward"]), (lambda r: str(r.seed % 2))
    clustered = bootstrap(by_env("grpo", gold), mean_over_groups, reps=300, clusters=by_env("grpo", prep))
    assert parse_ci(rows["grpo"]["Gold reward, mean"]) == pytest.approx(
        (clustered.point, clustered.low, clustered.high), abs=6e-4)
    expected = probability_of_improvement(by_env("ppo", gold), by_env("best_of_n_2", gold), reps=300,
                                          x_clusters=by_env("ppo", prep), y_clusters=by_env("best_of_n_2", prep))
    assert parse_ci(rows["ppo"][POI_HEADER]) == pytest.approx((expected.point, expected.low, expected.high), abs=6e-4)
    gain = difference_of_means(by_env("ppo", gold), by_env("best_of_n_2", gold), reps=300,
                               x_clusters=by_env("ppo", prep), y_clusters=by_env("best_of_n_2", prep))
    assert parse_ci(rows["ppo"][GAIN_HEADER]) == pytest.approx((gain.point, gain.low, gain.high), abs=6e-4)
    assert parse_ci(rows["best_of_n_2"][GAIN_HEADER])[0] == 0.0
    assert "Proxy reward, mean" in rows["ppo"]  # synthetic proxies differ from gold: both are shown
    assert int(rows["ppo"]["Runs"]) == 12  # seeds of both preparations pooled in one row
    pairwise = tables["Verifier track: Probability of improvement between algorithms"]
    ppo_row = next(r for r in pairwise if r["P(row > column)"] == "ppo")
    assert ppo_row["reinforce"] == "1.00*" and ppo_row["ppo"] == ""  # ppo targets 0.8 gold, reinforce 0.4
    fits = tables["Verifier track: Over-optimisation fits"]
    assert {f["Optimiser"] for f in fits} >= {"best_of_n (all n)", "ppo", "grpo"}
    assert all(f["Form"] == "d(α − βd)" for f in fits if f["Optimiser"].startswith("best_of_n"))
    # The headline puts both tracks' overall cells side by side, in the verifier track's order.
    headline = tables["Headline: both tracks"]
    assert [r["Algorithm"] for r in headline] == [r["Algorithm"] for r in tables[title]]
    learned = {r["Algorithm"]: r for r in tables["Learned-RM track: Overall"]}
    for row in headline:
        algo = row["Algorithm"]
        assert row["Verifier track: gold"] == rows[algo]["Gold reward, mean"]
        assert (row[GAIN_HEADER], row[POI_HEADER]) == (rows[algo][GAIN_HEADER], rows[algo][POI_HEADER])
        assert row["Learned-RM track: gold"] == learned[algo]["Gold reward, mean"]
        assert row["Its final KL"] == f"{parse_ci(learned[algo]['Final KL, mean'])[0]:.2f}"
    assert "Headline: both tracks" not in markdown_tables(to_markdown({"verifier": boards["verifier"]}))
    partial = build_tracks(_tagged(base, "verifier") + _tagged([r for r in base if r.algo != "grpo"], "learned-rm"),
                           reps=50, start="best_of_n_2", reference="best_of_n")
    grpo = next(r for r in markdown_tables(to_markdown(partial))["Headline: both tracks"] if r["Algorithm"] == "grpo")
    assert grpo["Learned-RM track: gold"] == grpo["Its final KL"] == "—"
    assert 'href="#headline"' in to_html(partial) and '<h2 id="headline">Headline: both tracks</h2>' in to_html(partial)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_sit_outside_every_axes():
    from benchmarks.plots import track_figures

    records = _tagged(synthetic_records(seeds=3), "rm-sweep")
    records = [RunRecord(**{**r.__dict__, "config": {**r.config, "tags": {**r.config["tags"], "rm": "a", "feedback": 128}}})
               for r in records]
    figures = track_figures(records, reference="best_of_n", start="best_of_n_2")
    assert set(figures) >= {"Learning curves", "Reward-KL frontier", "Over-optimisation", "Performance profiles", "RM sweep"}
    for title, fig in figures.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        assert fig.legends, f"{title}: no legend"
        for legend in fig.legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                if ax.get_visible():
                    assert not _overlaps(box, ax.get_window_extent(renderer)), f"{title}: the legend covers a panel"
        plt.close(fig)


def test_every_algorithm_has_its_own_colour_and_the_best_of_n_family_greys_darken_with_n():
    from matplotlib.colors import to_rgb

    from benchmarks.plots import _colors, learning_curves

    algorithms = ["ppo", "grpo", "rloo", "reinforce", "reinforce++", "dapo", "gspo", "dpo", "sb3-ppo", "x", "y"]
    family = ["best-of-n_1", "best-of-n_16", "best-of-n_4", "best-of-n_64"]
    colors = _colors(algorithms + family, "best-of-n")
    assert len({to_rgb(c) for c in colors.values()}) == len(colors)
    greys = [to_rgb(colors[f"best-of-n_{n}"]) for n in (1, 4, 16, 64)]
    assert all(r == g == b for r, g, b in greys) and [g[0] for g in greys] == sorted((g[0] for g in greys), reverse=True)
    assert not any(r == g == b for r, g, b in (to_rgb(colors[a]) for a in algorithms))  # no algorithm is grey
    # one legend entry per algorithm, even when its run count differs between envs
    records = synthetic_records(seeds=3)
    records = [r for r in records if not (r.algo == "ppo" and r.env_id == ENVS[0] and r.seed == 0)]
    fig = learning_curves(records, reps=50, reference="best_of_n")
    labels = fig.legends[0].get_texts()
    assert sorted(t.get_text() for t in labels) == ["grpo (n=3)", "ppo (n=2-3)", "reinforce (n=3)"]
    plt.close(fig)


def test_the_board_states_which_rows_gain_over_the_start_and_the_best_group_in_words():
    from benchmarks.leaderboard import findings

    records = synthetic_records(seeds=4)
    start = {(r.env_id, r.seed): r.final["objective/gold_reward"] for r in records if r.algo == "best_of_n_2"}
    # reinforce ends exactly at the start's gold on the first env: no gain there
    records = [RunRecord(**{**r.__dict__, "final": {**r.final, "objective/gold_reward": start[r.env_id, r.seed]}})
               if r.algo == "reinforce" and r.env_id == ENVS[0] else r for r in records]
    board = build_leaderboard(records, reps=300, start="best_of_n_2", reference="best_of_n")
    lines = findings(board)
    assert lines[0].startswith("Gold gain over the start (best_of_n_2) with its 95% CI above 0, over all envs: ppo, grpo, "
                               "reinforce; not above 0: none.")
    reinforce = next(r for r in board.per_env[ENVS[0]] if r.label == "reinforce").cells["gain_start"]
    assert lines[1] == f"On {ENVS[0]} the gain's CI is not above 0 for: reinforce {format_estimate(reinforce)}."
    assert lines[-1].startswith("Best group among the rows that train: ppo alone (")  # grpo, reinforce reliably worse
    close = build_leaderboard([r for r in records if r.algo != "grpo"] + [
        RunRecord(**{**r.__dict__, "algo": "ppo2"}) for r in records if r.algo == "ppo"], reps=300,
        start="best_of_n_2", reference="best_of_n")
    assert "Best group among the rows that train: ppo, ppo2 (" in findings(close)[-1]  # identical runs: not separated
    assert all(f"- {line}" in to_markdown(board) for line in lines)


def test_with_a_learned_proxy_the_board_says_where_gold_peaked():
    from benchmarks.leaderboard import findings

    records = synthetic_records(seeds=2)  # rising gold; grpo's below turned to a steady fall along KL
    records = [RunRecord(**{**r.__dict__, "curve": [{**p, "objective/gold_reward": 0.5 - 0.1 * p["objective/kl"]}
                                                    for p in r.curve]}) if r.algo == "grpo" else r for r in records]
    lines = findings(build_leaderboard(records, reps=100, start="best_of_n_2", reference="best_of_n"))
    peaks = [line for line in lines if line.startswith("Where gold peaked on ")]
    assert len(peaks) == len(ENVS)
    for line in peaks:
        by_label = {part.split(" at KL ")[0]: part for part in line.split(": ", 1)[1].rstrip(".").split("; ")}
        assert set(by_label) == {"best_of_n (all n)", "grpo", "ppo", "reinforce"}
        assert "first KL bin" in by_label["grpo"] and "first KL bin" not in by_label["ppo"]  # ppo's gold rises


def test_a_track_whose_proxy_is_its_gold_shows_no_proxy_columns():
    records = [RunRecord(**{**r.__dict__, "final": {**r.final, "objective/reward": r.final["objective/gold_reward"]}})
               for r in synthetic_records(seeds=2)]
    header = next(iter(markdown_tables(to_markdown(build_leaderboard(records, reps=50))).values()))[0]
    assert "Gold reward, mean" in header and not [h for h in header if h.startswith("Proxy")]
    from benchmarks.plots import overoptimisation

    fig = overoptimisation(records, reference="best_of_n")  # one row of panels: proxy and gold are one reward
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["best_of_n", "grpo", "ppo", "reinforce"]
    assert {ax.get_ylabel() for ax in fig.axes} == {"gold (= proxy) reward"} and len(fig.axes) == len(ENVS)
    plt.close(fig)


def test_a_learned_reward_gets_its_own_axes_beside_gold():
    """A reward model's scale is not the verifier's: gold and proxy are drawn in separate rows of panels."""
    from benchmarks.plots import overoptimisation, track_figures

    records = synthetic_records(seeds=2)
    fig = overoptimisation(records, reference="best_of_n")
    assert [ax.get_ylabel() for ax in fig.axes] == ["gold reward"] * len(ENVS) + ["proxy reward"] * len(ENVS)
    gold_lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    proxy_lines = {line.get_label(): line.get_ydata() for line in fig.axes[len(ENVS)].get_lines()}
    gap = proxy_lines["ppo"] - gold_lines["ppo"]  # the synthetic proxy is gold + 0.3 KL
    assert (gap >= -1e-12).all() and gap[-1] > 0.3
    plt.close(fig)
    best_of_n_only = [r for r in records if r.algo.startswith("best_of_n")]
    figures = track_figures(best_of_n_only, reference="best_of_n", start="best_of_n_2")
    assert "Learning curves" not in figures and "Over-optimisation" in figures  # nothing trained: no curves
    for fig in figures.values():
        plt.close(fig)
    finals_only = [RunRecord(**{**r.__dict__, "curve": []}) for r in records if r.algo == "ppo"]
    figures = track_figures(finals_only, reference="best_of_n", start="best_of_n_2")
    assert set(figures) == {"Reward-KL frontier", "Performance profiles"}  # one final KL per run draws no curve
    for fig in figures.values():
        plt.close(fig)


def test_a_one_point_curve_has_no_sample_efficiency():
    """Best-of-n logs one batch while it "trains": no learning curve, so no area under one."""
    from benchmarks.leaderboard import run_value

    one = RunRecord("best-of-n_4", "llm_gym/Sort-v0", 0, {}, curve=[{"step": 64.0, "objective/gold_reward": 0.6}])
    two = RunRecord("ppo", "llm_gym/Sort-v0", 0, {}, curve=[{"step": 0.0, "objective/gold_reward": 0.2},
                                                            {"step": 10.0, "objective/gold_reward": 0.4}])
    assert np.isnan(run_value(one, "auc")) and run_value(two, "auc") == pytest.approx(0.3)


def test_sample_axes_read_in_thousands_so_five_digit_ticks_do_not_overlap():
    from benchmarks.plots import learning_curves

    records = [RunRecord(**{**r.__dict__, "curve": [{**p, "step": p["step"] * 1000} for p in r.curve]})
               for r in synthetic_records(seeds=2)]
    fig = learning_curves(records, reps=20, reference="best_of_n")
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert ticks and all(t == "0" or t.endswith("k") for t in ticks), ticks
    plt.close(fig)
