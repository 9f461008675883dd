"""The evaluation job kinds' parts that need no model: labeler folds, the agreement ceiling,
the SFT reference of a PPO chain, and who may launch an evaluation's sampling."""

from __future__ import annotations

from app.worker.evaluation_runners import annotator_agreement, labeler_folds, sft_reference


def test_labelers_are_dealt_into_folds_of_about_equal_work() -> None:
    counts = {1: 40, 2: 35, 3: 10, 4: 10, 5: 5, 6: 5, 7: 3, 8: 2}
    folds = labeler_folds(counts, 3, seed=0)
    assert sorted(labeler for fold in folds for labeler in fold) == sorted(counts)
    loads = sorted(sum(counts[labeler] for labeler in fold) for fold in folds)
    assert loads[-1] - loads[0] <= 10
    assert labeler_folds(counts, 3, seed=0) == folds  # reproducible


def test_the_ceiling_is_the_labelers_agreement_on_shared_tasks() -> None:
    def row(labeler: int, prompt: int, ranks: dict[int, int]) -> dict:
        return {
            "labeler_id": labeler,
            "prompt_id": prompt,
            "completions": [{"completion_id": c, "rank": r} for c, r in ranks.items()],
        }

    rows = [
        row(1, 10, {1: 1, 2: 2, 3: 3}),
        row(2, 10, {1: 1, 2: 3, 3: 2}),  # agrees on 2 of 3 pairs
        row(1, 11, {4: 1, 5: 2}),
        row(2, 11, {4: 1, 5: 2}),  # agrees on 1 of 1
        row(3, 12, {6: 1, 7: 2}),  # alone on its task: no agreement information
    ]
    report = annotator_agreement(rows)
    assert report.pairwise_agreement == 3 / 4 and report.pairs == 2


def test_the_sft_reference_of_a_ppo_chain(session) -> None:
    from app.models import ModelVersion

    base = ModelVersion(kind="base", name="tiny", path="tiny", parent_ids=[])
    session.add(base)
    session.flush()
    sft = ModelVersion(kind="sft", name="sft-1", path="/m/sft", parent_ids=[base.id])
    rm = ModelVersion(kind="rm", name="rm-2", path="/m/rm", parent_ids=[])
    session.add_all([sft, rm])
    session.flush()
    ppo = ModelVersion(kind="ppo", name="ppo-3", path="/m/ppo", parent_ids=[sft.id, rm.id])
    session.add(ppo)
    session.flush()
    again = ModelVersion(kind="ppo", name="ppo-4", path="/m/ppo2", parent_ids=[ppo.id, rm.id])
    session.add(again)
    session.flush()
    assert sft_reference(session, ppo) is sft
    assert sft_reference(session, again) is sft
    assert sft_reference(session, base) is None
    session.rollback()


def test_evaluation_sampling_is_not_launched_directly(api_as) -> None:
    researcher = api_as("researcher")
    r = researcher.post(
        "/api/v1/jobs",
        json={"kind": "evaluation-sample", "params": {"evaluation_id": 1, "prompt_ids": [1]}},
    )
    assert r.status_code == 422 and r.json()["field"] == "kind"
    form = researcher.get("/admin/jobs")
    assert "Evaluation sampling" not in form.text and "rm-cv" in form.text
    r = researcher.post("/api/v1/jobs", json={"kind": "rm-cv", "params": {"folds": 1}})
    assert r.status_code == 422
