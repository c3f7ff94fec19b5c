"""Learning subcommands: ``cluster`` (DeepCluster / cluster now), ``recluster`` (new k, stored
features) and ``clusters`` (list runs)."""

from __future__ import annotations

from mskstudio.cli.cmd_cluster_review import add_action_args, label_set_name, print_progress, run_action
from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.cli.distributed import add_distributed_options, run_maybe_distributed
from mskstudio.jobrun import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "cluster", help="DeepCluster pretraining + clustering, or a quick 'cluster now' (--fast)",
        description="Cluster the project's images. Default: DeepCluster (Caron et al. 2018) for "
                    "--epochs epochs, then a stored cluster run. --fast: features -> PCA -> k-means "
                    "once with the current backbone (the latest DeepCluster run, else a random one).")
    add_project_arg(p)
    p.add_argument("--fast", action="store_true", help="cluster now: no training (see --pretrain-epochs)")
    p.add_argument("--arch", choices=("resnet18", "resnet50"), help="backbone (default resnet18)")
    p.add_argument("--k", type=int, help="number of clusters (default: images / 40)")
    p.add_argument("--epochs", type=int, help="DeepCluster epochs (default 10)")
    p.add_argument("--pretrain-epochs", type=int, help="with --fast: quick DeepCluster epochs first")
    p.add_argument("--batch-size", type=int, help="default 64")
    p.add_argument("--input-size", type=int, help="square input side in pixels (default 224)")
    p.add_argument("--lr", type=float, help="SGD learning rate (default 0.05)")
    p.add_argument("--pca-dim", type=int, help="PCA-whitening dimensions (default 256, capped at images / 40)")
    p.add_argument("--init", help="scratch | auto (latest DeepCluster run) | run:ID | path to a weights file")
    p.add_argument("--resume", help="continue a cancelled DeepCluster model run: its id, or 'latest'")
    p.add_argument("--label-set", help="label set the clusters will be labelled in")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--workers", type=int, help="data-loading processes (default 0 on CPU)")
    p.add_argument("--seed", type=int)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_distributed_options(p)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser(
        "recluster", help="a new cluster run with another k from a run's stored features (no network)",
        description="k-means with a new k on the features a cluster run was made from, in about a "
                    "second; the new run starts unlabelled (individual human labels stay).")
    add_project_arg(p)
    p.add_argument("run", type=int, help="cluster run whose features to re-cluster")
    p.add_argument("--k", type=int, required=True, help="number of clusters")
    p.add_argument("--merge", action="store_true",
                   help="join the run's clusters into K groups (average linkage of their centroids) "
                        "instead of k-means: each new cluster is a union of old ones")
    p.add_argument("--seed", type=int)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_recluster)

    p = sub.add_parser("clusters", help="list cluster runs, the clusters of one run, or label, discard, "
                                         "merge, split them (as on the Clusters board)")
    add_project_arg(p)
    p.add_argument("run", nargs="?", type=int, help="cluster run id")
    p.add_argument("--order", default="size", choices=("size", "spread", "unlabelled", "index"))
    add_action_args(p)
    p.set_defaults(func=cmd_clusters)


def cluster_params(args) -> dict:
    params = {
        "mode": "fast" if args.fast else "deepcluster", "arch": args.arch, "k": args.k,
        "epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs, "batch_size": args.batch_size,
        "input_size": args.input_size, "lr": args.lr, "pca_dim": args.pca_dim, "init": args.init,
        "label_set": args.label_set, "device": args.device, "workers": args.workers, "seed": args.seed,
    }
    if args.resume:
        params["resume"] = True if args.resume == "latest" else int(args.resume)
    return {k: v for k, v in params.items() if v is not None}


def cmd_cluster(args) -> int:
    with open_writable(args.project) as project:
        result = run_maybe_distributed(project, "cluster", cluster_params(args), args,
                                       label="cluster now" if args.fast else "DeepCluster")
    if result is None:  # --submit-only
        return 0
    return _print_cluster_result(result, args.json)


def cmd_recluster(args) -> int:
    from mskstudio.jobrun import run_sync

    with open_writable(args.project) as project:
        result = run_sync(project, "recluster", {"cluster_run_id": args.run, "k": args.k, "seed": args.seed,
                                                 "method": "merge" if args.merge else "kmeans"},
                          label=f"{'merge' if args.merge else 're-cluster'} run {args.run} into {args.k}")
    return _print_cluster_result(result, args.json)


def _print_cluster_result(result: dict, as_json: bool) -> int:
    if as_json:
        print_json(result)
        return 0
    print(f"cluster run {result['cluster_run_id']}: {result['n']} images in k = {result['k']} clusters"
          + (f", backbone = model run {result['model_run_id']}" if result["model_run_id"] else ""))
    if result["nmi_history"]:
        print("  NMI between consecutive epochs: " + ", ".join(f"{v:.3f}" for v in result["nmi_history"]))
    for name, m in result["metrics"].get("truth", {}).items():
        print(f"  vs {name}: NMI {m['nmi']:.3f}  ARI {m['ari']:.3f}  purity {m['purity']:.3f}  (n={m['n']})")
    return 0


def cmd_clusters(args) -> int:
    if args.action is not None:
        if args.run is None:
            raise ValueError(f"clusters {args.action}: give the cluster run id first")
        with open_writable(args.project) as project:
            return run_action(project, args)
    with open_project(args.project) as project:
        if args.run is None:
            print(f"{'run':>4}  {'k':>5} {'images':>7} {'clusters':>8}  model  truth")
            for run in project.clusters.run_records():
                truth = run.metrics.get("truth", {})
                t = ", ".join(f"{n}: NMI {m['nmi']:.2f}" for n, m in truth.items())
                print(f"{run.id:>4}  {run.k:>5} {run.n_images:>7} {run.n_clusters:>8}  "
                      f"{run.model_run_id or '-':>5}  {t}")
            return 0
        if project.clusters.run(args.run) is None:
            raise UserError(f"no cluster run {args.run}")
        ls = project.labels.find_label_set(label_set_name(project, args.run, args.label_set))
        if ls is None and args.label_set:
            names = ", ".join(r["name"] for r in project.labels.label_sets("image"))
            raise ValueError(f"no label set {args.label_set!r} (label sets: {names})")
        print_progress(project, args.run, ls)
        for c in project.clusters.clusters(args.run, order=args.order):
            in_set = c["class_label_set_id"] == ls
            label = ("discarded" if c["discarded"] else (c["class_name"] or "")) if in_set else ""
            print(f"  #{c['idx']:<4} id {c['id']:<5} size {c['size']:>5}  "
                  f"spread {c['spread'] or 0:.3f}  {label}")
    return 0
