"""Retrieval, evaluation, label-noise queue and ONNX export: embed, similar, eval-retrieval,
noise-queue, export-onnx."""

from __future__ import annotations

from pathlib import Path

from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.jobrun import run_sync


def _rep(value: str) -> int | str:
    return "pixels" if value in ("pixels", "baseline") else int(value)


def register(sub) -> None:
    p = sub.add_parser("embed", help="compute (or refresh) the retrieval embeddings of a model run")
    add_project_arg(p)
    p.add_argument("--run", type=_rep, default="pixels", help="model run id, or 'pixels' (default)")
    p.add_argument("--no-roi", action="store_true", help="whole images even where a mask/box exists")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--rebuild", action="store_true", help="recompute everything")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("similar", help="the k most similar images of other patients, and their vote")
    add_project_arg(p)
    p.add_argument("image_id", type=int)
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--run", type=_rep, default="pixels", help="model run id, or 'pixels' (default)")
    p.add_argument("--label-set", default=None, help="vote on this label set instead of the diagnosis")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("eval-retrieval", help="precision@k and vote accuracy vs the pixel baseline")
    add_project_arg(p)
    p.add_argument("--run", type=_rep, default=None, help="model run id (default: baseline only)")
    p.add_argument("--label-set", default="diagnosis")
    p.add_argument("--shuffles", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("noise-queue", help="images whose cluster label the kNN vote/classifier dispute")
    add_project_arg(p)
    p.add_argument("--label-set", required=True)
    p.add_argument("--run", type=_rep, default="pixels", help="embedding run id, or 'pixels'")
    p.add_argument("--classifier", type=int, default=None, help="classifier run id (predictions)")
    p.add_argument("--cluster-run", type=int, default=None)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_noise)

    p = sub.add_parser("export-onnx", help="export a model run to ONNX with parity check and model card")
    add_project_arg(p)
    p.add_argument("run_id", type=int)
    p.add_argument("outdir")
    p.add_argument("--role", action="append", choices=("embedder", "classifier", "segmenter"),
                   help="what to export (default: by the run's kind)")
    p.set_defaults(func=cmd_export)


def cmd_embed(args) -> int:
    with open_writable(args.project) as project:
        res = run_sync(project, "embed", {"run_id": args.run, "roi": not args.no_roi,
                                          "backend": args.backend, "rebuild": args.rebuild}, label="embed")
    print(f"{res['n']} embeddings of {res['rep']} ({res['dim']}-d) in {res['path']}")
    return 0


def cmd_similar(args) -> int:
    from mskstudio.ml.retrieve.similar import similar

    with open_project(args.project) as project:
        res = similar(project, args.run, args.image_id, args.k, label_set=args.label_set)
    if args.json:
        print_json(res.as_dict())
        return 0
    print(f"image {res.image_id}: {len(res.hits)} similar images of other patients ({res.rep}, "
          f"{res.index.get('kind')} index over {res.index.get('n')})")
    for h in res.hits:
        extra = f"  [{h.label}]" if h.label else ""
        print(f"  {h.image_id:>6}  d={h.distance:.3f}  {h.pseudonym or '?':<14} {h.diagnosis or '—':<24} "
              f"{h.dignity or '—':<12} {h.study_date or '—':<10} {h.centre or '—'}{extra}")
    v = res.vote
    print(f"vote ({v.field}): {v.winner} {v.counts.get(v.winner, 0)}/{v.k}  "
          + ", ".join(f"{k}: {n}" for k, n in v.counts.items()))
    return 0


def cmd_eval(args) -> int:
    with open_writable(args.project) as project:
        res = run_sync(project, "eval-retrieval", {"run_id": args.run, "label_set": args.label_set,
                                                   "shuffles": args.shuffles, "seed": args.seed},
                       label="eval-retrieval")
    if args.json:
        print_json(res)
        return 0
    print(f"{res['n_images']} images, {res['n_patients']} patients, {res['shuffles']} patient-level "
          f"splits (queries per split: {[s['n_queries'] for s in res['splits']]})")
    for name, per_k in res["summary"].items():
        print(f"  {name}")
        for kname, m in per_k.items():
            p, v = m["precision"], m["vote_acc"]
            print(f"    k={kname[1:]:<2} precision {p['mean']:.3f} ± {p['sd']:.3f}   "
                  f"vote acc {v['mean']:.3f} ± {v['sd']:.3f}")
    return 0


def cmd_noise(args) -> int:
    with open_writable(args.project) as project:
        res = run_sync(project, "noise-queue", {
            "label_set": args.label_set, "run_id": args.run, "classifier_run_id": args.classifier,
            "cluster_run_id": args.cluster_run, "k": args.k, "limit": args.limit}, label="noise-queue")
    if args.json:
        print_json(res)
        return 0
    print(f"{res['n']} images where the opinions disagree (top {len(res['items'])}):")
    for it in res["items"]:
        agree = "" if it["knn_agree"] is None else f" ({it['knn_agree']:.0%} agree)"
        print(f"  {it['image_id']:>6}  score {it['score']:.2f}  given {it['given']:<14} "
              f"kNN {it['knn'] or '—'}{agree}  classifier {it['classifier'] or '—'}")
    return 0


def cmd_export(args) -> int:
    with open_writable(args.project) as project:
        res = run_sync(project, "export-onnx", {"model_run_id": args.run_id,
                                                "outdir": str(Path(args.outdir).absolute()),
                                                "roles": args.role}, label="export-onnx")
    for f in res["files"]:
        p = f["parity"]
        print(f"{f['file']}: {f['role']}, parity max abs diff {p['max_abs_diff']:.2e} on {p['n']} images "
              f"({'ok' if p['ok'] else 'ABOVE TOLERANCE'})")
    print(f"model card: {res['card']}")
    return 0
