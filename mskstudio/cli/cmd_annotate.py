"""Annotations and segmentation: train-seg, prelabel, export-annotations, import-masks."""

from __future__ import annotations

from pathlib import Path

from mskstudio.cli.common import add_project_arg, open_project, open_writable, print_json
from mskstudio.cli.distributed import add_distributed_options, run_maybe_distributed
from mskstudio.jobrun import run_sync


def register(sub) -> None:
    p = sub.add_parser("train-seg", help="train a lesion segmenter (U-Net / UNet++) on the project's masks")
    add_project_arg(p)
    p.add_argument(
        "--box",
        action="store_true",
        help="train the box-prompted ROI segmenter (segments inside a box; refines prelabel) instead",
    )
    p.add_argument(
        "--arch",
        default=None,
        choices=("unet-resnet34", "unetpp-resnet34", "unet-resnet18", "unetpp-resnet18", "unet-small"),
        help="default: unet-resnet34 (whole image), unet-small (--box)",
    )
    p.add_argument("--size", type=int, default=None, help="square input size (default 256; --box: crop 96)")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (whole image), 20 (--box)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--folds", type=int, default=1, help="patient folds (>= 2: cross-validation)")
    p.add_argument("--class", dest="class_name", default=None, help="train on one mask class only")
    p.add_argument(
        "--encoder-run",
        type=int,
        default=None,
        help="initialise the encoder from a DeepCluster run (resnet18 -> *-resnet18 archs)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda … (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", type=int, metavar="RUN",
                   help="continue a cancelled or killed segmenter run at its next epoch (with --box: a box run)")
    add_distributed_options(p)
    p.set_defaults(func=cmd_train_seg)

    p = sub.add_parser("prelabel", help="predict masks (source 'model') for images without a human mask")
    add_project_arg(p)
    p.add_argument("--run", type=int, default=None, help="segmenter run id (default: the latest finished)")
    p.add_argument(
        "--refine-run",
        type=int,
        default=None,
        help="box-segmenter run that re-segments each found region (default: the latest; 0: none)",
    )
    p.add_argument("--class", dest="class_name", default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_prelabel)

    p = sub.add_parser(
        "export-annotations",
        help="write masks (PNG), boxes (COCO JSON), lesions.csv, labels.csv, DICOM SEG and SR files",
    )
    add_project_arg(p)
    p.add_argument("outdir", help="output folder")
    p.add_argument(
        "--no-seg",
        dest="seg",
        action="store_false",
        help="skip the DICOM SEG files (seg/<image uid>.dcm, one per annotated image)",
    )
    p.add_argument(
        "--seg-all",
        action="store_true",
        help="one SEG segment per mask (every reader, model, import) instead of the best mask per class: "
        "lossless, for import-seg into another project",
    )
    p.add_argument(
        "--no-sr",
        dest="sr",
        action="store_false",
        help="skip the DICOM SR measurement reports (sr/<image uid>.dcm: rulers, angles, lesion sizes, boxes, "
        "classifications)",
    )
    p.add_argument("--no-labels", dest="labels", action="store_false",
                   help="skip labels.csv (image labels of every label set; see export-labels)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-masks", help="import ground-truth masks listed in a manifest.csv (phantoms)")
    add_project_arg(p)
    p.add_argument("manifest", help="manifest.csv with 'sop_uid' and 'mask' (PNG path) columns")
    p.add_argument("--annotator", default="phantom-truth")
    p.add_argument("--class", dest="class_name", default="tumour")
    p.add_argument("--boxes", action="store_true", help="also add a box around each mask")
    p.set_defaults(func=cmd_import_masks)


def cmd_train_seg(args) -> int:
    common = {
        "arch": args.arch,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "class": args.class_name,
        "device": args.device,
        "seed": args.seed,
    }
    if args.box:
        kind, params = "train-seg-box", {**common, "crop": args.size}
    else:
        kind, params = (
            "train-seg",
            {**common, "size": args.size, "folds": args.folds, "encoder_run_id": args.encoder_run},
        )
    # Unset options fall back to the job's own defaults (they differ between the two kinds).
    params = {k: v for k, v in params.items() if v is not None or k in ("class", "device", "encoder_run_id")}
    if args.resume:  # the run keeps its own parameters
        params = {"resume": args.resume, "device": args.device}
    with open_writable(args.project) as project:
        result = run_maybe_distributed(project, kind, params, args, label=kind)
    if result is not None:  # None: --submit-only printed the commands
        print_json(result)
    return 0


def cmd_prelabel(args) -> int:
    with open_writable(args.project) as project:
        result = run_sync(
            project,
            "prelabel",
            {"model_run_id": args.run, "refine_run_id": args.refine_run, "class": args.class_name,
             "device": args.device},
            label="prelabel",
        )
    print_json(result)
    return 0


def cmd_export(args) -> int:
    with open_project(args.project) as project:
        from mskstudio.io.exports.annotations import export_annotations

        # Export only reads the store (plus one audit line when writable): no job row needed,
        # and a read-only project can be exported.
        result = export_annotations(project, Path(args.outdir).absolute(), seg=args.seg, seg_all=args.seg_all,
                                    sr=args.sr, labels=args.labels)
    print_json(result)
    return 0


def cmd_import_masks(args) -> int:
    from mskstudio.io.exports.annotations import import_masks

    with open_writable(args.project) as project:
        result = import_masks(
            project,
            Path(args.manifest),
            annotator=args.annotator,
            class_name=args.class_name,
            boxes=args.boxes,
        )
    print_json(result)
    return 0 if result["imported"] else 1
