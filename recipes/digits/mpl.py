# Meta Pseudo Labels on the embedded digits: the FixMatch recipe's split (40 labels, 4 per class,
# the other 1,219 train images unlabelled) and views; a teacher and a student WRN-10-1, each
# with its own optimizer, updated in order every iteration (the student's step on the teacher's
# pseudo-labels, then the teacher from the student's labelled loss). The student is the result:
#   mlflow run . -e train --env-manager local -P config=recipes/digits/mpl.py
_base_ = "fixmatch.py"

_wrn = dict(
    type="ImageClassifier",
    backbone=dict(type="WideResNet", num_classes=10, depth=10, widen_factor=1, bn_momentum=0.1),
    head=dict(type="ClsHead", loss=dict(type="CrossEntropyLoss")),
)
model = dict(
    _delete_=True,
    type="MetaPseudoLabels",
    model=_wrn,
    threshold=0.6,
    T=0.7,
    lambda_u=8.0,
    uda_steps=300,
    mu=7,
    label_smoothing=0.15,
    ema_decay=0.999,
)
# MPL keeps the paper's 7 unlabelled images per labelled one (the FixMatch recipe moved to 4)
data = dict(unlabeled_dataloader=dict(samples_per_gpu=16 * 7))
_sgd = dict(type="SGD", lr=0.03, momentum=0.9, nesterov=True, weight_decay=5e-4)
optimizer = dict(_delete_=True, teacher=_sgd, student=_sgd)  # an OptimWrapperDict
