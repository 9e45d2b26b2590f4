"""Solver panel: the registry's solvers (those the forward model cannot serve greyed out, with
the reason as tooltip), a form built from the selected solver's ``Params`` dataclass, the run
budget (steps, samples, seed), device, precision and prior, and the predicted cost.

The quality preset (:mod:`diffrecon.engine.presets`): the panel starts from ``fast``;
:attr:`SolverPanel.full_quality`, a check box the window puts beside Reconstruct, switches the
solver, steps and parameters to ``full`` and back. Edits after that override the preset (the
provenance says which)."""
from __future__ import annotations

import dataclasses
import json

import torch
from PySide6 import QtCore, QtGui, QtWidgets

from ..engine import RunConfig
from ..engine.presets import FRONT_END_DEFAULT, resolve
from ..errors import InputError
from ..schedule import SCHEDULES
from ..solvers.labels import spread_of_run
from .divergence_banner import GuardOptions
from .param_form import ParamForm

PRIORS = ("default", "gaussian")
_FOLDER = "Choose folder…"


def available_devices() -> list[str]:
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        devices += ["cuda"] + ([f"cuda:{i}" for i in range(n)] if n > 1 else [])
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _solvers() -> dict:
    try:
        from ..solvers import SOLVERS
    except ImportError:  # a half-written solver module must not take the window down
        return {}
    return SOLVERS


class SolverPanel(QtWidgets.QWidget):
    """Reads and writes a :class:`RunConfig`; ``changed`` fires on every edit."""

    changed = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._op = None
        self._weight_choice = None  # the Auto weight's last choice (weights.WeightChoice)
        self.solver_box = QtWidgets.QComboBox()
        self.solver_box.setModel(QtGui.QStandardItemModel(self.solver_box))
        self.solver_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.solver_box.setMinimumContentsLength(24)
        self.title = QtWidgets.QLabel()  # the full name: the closed combo box may cut it
        self.title.setWordWrap(True)
        self.reference = QtWidgets.QLabel()
        self.reference.setWordWrap(True)
        self.reference.setStyleSheet("color: gray; font-size: 9pt;")
        self.form = ParamForm()
        self.steps = _spin(1, 100000, 50)
        self.samples = _spin(1, 100000, 4)
        self.seed = _spin(0, 2**31 - 1, 0)
        self.device = QtWidgets.QComboBox()
        self.device.addItems(available_devices())
        self.precision = QtWidgets.QComboBox()
        self.precision.addItems(["bf16", "fp32"])
        self.precision.setToolTip("Network autocast dtype on GPU; solver state stays float32.")
        self.compile = QtWidgets.QComboBox()
        self.compile.addItems(["auto", "graphs", "compile", "none"])
        self.compile.setToolTip("How the network runs on CUDA: graphs = CUDA graphs (recorded once per batch "
                                "size); compile = torch.compile (faster for large networks, a minute or two "
                                "to compile a batch size the first time); none = eagerly. auto = compile for "
                                "large networks when the run is long enough to pay for it, else graphs; the "
                                "log says which and why.")
        self.schedule = QtWidgets.QComboBox()
        self.schedule.addItems(list(SCHEDULES))
        self.schedule.setToolTip("Noise levels of the steps: karras (EDM, the default); vp_uniform (DDIM's "
                                 "uniform subsequence of the prior's training levels); vp_quadratic (DiffPIR's "
                                 "quadratic subsequence); vp_sde (uniform time of the VP SDE, as in DPS code); "
                                 "budget (levels searched for this prior, forward model, solver and number of steps: "
                                 "about 80 solver runs with progress the first time, then read from the cache).")
        self.checkpointing = QtWidgets.QCheckBox("Gradient checkpointing")
        self.checkpointing.setToolTip("For solvers that backpropagate through the network (DPS): recompute "
                                      "activations instead of storing them, about a third of the memory "
                                      "for about 40 % more time.")
        self.prior = QtWidgets.QComboBox()
        self.prior.addItems([*PRIORS, _FOLDER])
        self.prior.setToolTip("default: the bundled prior; gaussian: exact Gaussian prior (tests, checks);"
                              " or a folder with card.json and weights.")
        self.guard = GuardOptions()
        self.warm_start = QtWidgets.QComboBox()
        self.warm_start.addItems(["none", "tv"])
        self.warm_start.setToolTip("tv: start the diffusion from the TV reconstruction noised to a level estimated "
                                   "from its error (Come-Closer-Diffuse-Faster); all steps are spent below that "
                                   "level. none: start from pure noise.")
        self.cost = QtWidgets.QLabel()
        self.cost.setWordWrap(True)
        self.warning = QtWidgets.QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #d08000; font-weight: bold;")
        self.warning.hide()
        self.preset = FRONT_END_DEFAULT
        self.full_quality = QtWidgets.QCheckBox("Full quality")  # laid out by the window, beside Reconstruct
        self.full_quality.setToolTip(_quality_tip())

        # what a run is made of first (prior, budget), so it is visible without scrolling at
        # 1600 x 1000; the solver's own parameters and the run options below
        budget = QtWidgets.QFormLayout()
        budget.addRow("Prior", self.prior)
        budget.addRow("Steps", self.steps)
        budget.addRow("Samples", self.samples)
        budget.addRow("Warm start", self.warm_start)
        options = QtWidgets.QFormLayout()
        options.addRow("Schedule", self.schedule)
        options.addRow("Seed", self.seed)
        options.addRow("Device", self.device)
        options.addRow("Precision", self.precision)
        options.addRow("Network", self.compile)
        options.addRow("", self.checkpointing)
        options.addRow("Divergence", self.guard)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.solver_box)
        layout.addWidget(self.title)
        layout.addWidget(self.reference)
        layout.addLayout(budget)
        layout.addWidget(self.form)
        self.tools = QtWidgets.QHBoxLayout()  # buttons that act on the form (Auto weight)
        layout.addLayout(self.tools)
        layout.addLayout(options)
        layout.addWidget(self.cost)
        layout.addWidget(self.warning)
        layout.addStretch(1)

        self._fill_solvers()
        self.solver_box.currentIndexChanged.connect(self._on_solver_changed)
        self.form.changed.connect(self._on_any_change)
        for w in (self.steps, self.samples, self.seed):
            w.valueChanged.connect(self._on_any_change)
        for w in (self.device, self.precision, self.compile, self.schedule, self.warm_start):
            w.currentIndexChanged.connect(self._on_any_change)
        self._gpu_precision = self.precision.currentText()  # the choice kept while the CPU forces fp32
        self.precision.activated.connect(self._on_precision_chosen)
        self.device.currentIndexChanged.connect(self._on_device_changed)
        self.checkpointing.toggled.connect(self._on_any_change)
        self.guard.changed.connect(self._on_any_change)
        self.prior.activated.connect(self._on_prior_activated)
        self.full_quality.toggled.connect(lambda on: self.apply_preset("full" if on else "fast"))
        self.schedule.currentIndexChanged.connect(self._on_schedule_chosen)
        self._on_device_changed()
        self.apply_preset(FRONT_END_DEFAULT)  # the window starts fast, not at the engine's (full) default

    # ------------------------------------------------------------------ model -> view
    def _fill_solvers(self) -> None:
        model = self.solver_box.model()
        model.clear()
        for name, info in _solvers().items():
            # the closed box shows the acronym (it fits); the list and the label below, the whole name
            item = QtGui.QStandardItem(f"{name} — {info.title.split(' (')[0]}")
            item.setData(name, QtCore.Qt.ItemDataRole.UserRole)
            item.setData(f"{name} — {info.title}", FULL_NAME_ROLE)
            model.appendRow(item)
        view = self.solver_box.view()
        view.setItemDelegate(_FullNameDelegate(view))
        view.setMinimumWidth(view.sizeHintForColumn(0) + 24)

    def set_operator(self, op) -> None:
        """Grey out the solvers ``op`` cannot serve, with the reason as tooltip."""
        self._op = op
        model = self.solver_box.model()
        solvers = _solvers()
        for row in range(model.rowCount()):
            item = model.item(row)
            info = solvers[item.data(QtCore.Qt.ItemDataRole.UserRole)]
            reason = info.unmet_need(op) if op is not None else None
            item.setEnabled(reason is None)
            item.setToolTip(reason or info.reference)
        current = model.item(self.solver_box.currentIndex()) if model.rowCount() else None
        if current is not None and not current.isEnabled():
            for row in range(model.rowCount()):
                if model.item(row).isEnabled():
                    self.solver_box.setCurrentIndex(row)
                    break
        self._on_any_change()

    def set_config(self, config: RunConfig) -> None:
        """Show ``config`` (restored settings or a result's provenance) without signal loops."""
        widgets = (self.solver_box, self.steps, self.samples, self.seed, self.device, self.precision, self.prior,
                   self.compile, self.checkpointing, self.schedule, self.warm_start)
        blockers = [QtCore.QSignalBlocker(w) for w in widgets]
        index = self.solver_box.findData(config.solver, QtCore.Qt.ItemDataRole.UserRole)
        if index >= 0:
            self.solver_box.setCurrentIndex(index)
        self.steps.setValue(int(config.steps))
        self.samples.setValue(int(config.samples))
        self.seed.setValue(int(config.seed))
        _select(self.device, config.device)
        self._gpu_precision = config.precision if config.precision in ("bf16", "fp32") else self._gpu_precision
        _select(self.precision, config.precision)
        _select(self.compile, config.compile)
        _select(self.schedule, config.schedule)
        _select(self.warm_start, config.warm_start)
        self.checkpointing.setChecked(bool(config.checkpointing))
        _select(self.prior, config.prior, insert_at=len(PRIORS))
        self.guard.set_values(config.on_divergence, config.retry_on_divergence)
        self._set_preset(config.preset)
        del blockers
        self._on_device_changed()
        self._on_solver_changed()
        self.form.set_values(dict(config.params))
        self._on_any_change()

    def apply_preset(self, name: str) -> None:
        """Show the quality preset ``name``: its solver, steps and parameters (the rest stays)."""
        values = resolve(name)
        with QtCore.QSignalBlocker(self.solver_box), QtCore.QSignalBlocker(self.steps):
            index = self.solver_box.findData(values["solver"], QtCore.Qt.ItemDataRole.UserRole)
            self.solver_box.setCurrentIndex(max(index, 0))
            self.steps.setValue(int(values["steps"]))
        _select(self.warm_start, values["warm_start"])
        self._set_preset(name)
        self._on_solver_changed()
        # every parameter: the solver's defaults under the preset's (earlier edits do not stay)
        self.form.set_values(dataclasses.asdict(RunConfig(**values).recipe.params))
        self._on_any_change()

    def _on_schedule_chosen(self) -> None:
        """The budget schedule is searched for runs from noise: choosing it sets warm start none."""
        if self.schedule.currentText() == "budget":
            _select(self.warm_start, "none")

    def _set_preset(self, name: str) -> None:
        self.preset = name
        with QtCore.QSignalBlocker(self.full_quality):
            self.full_quality.setChecked(name == "full")

    # ------------------------------------------------------------------ view -> model
    def solver_name(self) -> str | None:
        return self.solver_box.currentData(QtCore.Qt.ItemDataRole.UserRole)

    def solver_info(self):
        return _solvers().get(self.solver_name() or "")

    def apply_weight(self, choice) -> None:
        """Put an Auto weight choice into the form; the next run records it while the value stands."""
        if choice.solver != self.solver_name():
            return
        self.form.set_values({**self.form.values(), choice.param: choice.value})
        # the form may round (its spin boxes show a fixed number of decimals): record what it holds
        self._weight_choice = dataclasses.replace(choice, value=self.form.values()[choice.param])
        self._on_any_change()

    def _chosen_weight(self) -> dict | None:
        c = self._weight_choice
        if c is None or c.solver != self.solver_name() or self.form.values().get(c.param) != c.value:
            return None
        return c.provenance()

    def config(self, base: RunConfig | None = None) -> RunConfig:
        base = base or RunConfig()
        return dataclasses.replace(
            base, solver=self.solver_name() or base.solver, params=self.form.values(),
            steps=self.steps.value(), samples=self.samples.value(), seed=self.seed.value(),
            device=self.device.currentText(), precision=self.precision.currentText(),
            prior=self.prior.currentText(), compile=self.compile.currentText(),
            checkpointing=self.checkpointing.isChecked(), schedule=self.schedule.currentText(),
            **self.guard.values(), warm_start=self.warm_start.currentText(), weight_choice=self._chosen_weight(),
            preset=self.preset)

    def _params_or_none(self, info):
        """The chosen solver's Params from the form, or None (its defaults) while the form is invalid."""
        try:
            return info.Params(**self.form.values())
        except Exception:  # invalid form values: the run will report them
            return None

    def spread(self):
        """What the chosen solver's spread is with the form's values (:mod:`diffrecon.solvers.labels`), or None."""
        info = self.solver_info()
        if info is None:
            return None
        try:
            return spread_of_run(info, info.Params(**self.form.values()), self.warm_start.currentText())
        except Exception:  # invalid form values: the run will report them
            return None

    def is_deterministic(self) -> bool:
        """True where the spread is not a posterior std (seed spread, prior samples, point estimate)."""
        spread = self.spread()
        return spread is not None and not spread.is_posterior

    def predicted_nfe(self) -> int:
        """Network evaluations before planning: samples x the solver's evaluations per sample."""
        info = self.solver_info()
        if info is None:
            return 0
        return self.samples.value() * info.evaluations(self._params_or_none(info), self.steps.value())

    # ------------------------------------------------------------------ slots
    def _on_solver_changed(self, *_):
        info = self.solver_info()
        self.form.set_params_class(info.Params if info is not None else None)
        self.title.setText(f"<b>{info.title}</b>" if info is not None else "")
        self.reference.setText(info.reference if info is not None else "No solvers are registered.")
        self._on_any_change()

    def _on_any_change(self, *_):
        info = self.solver_info()
        per = "" if info is None else (" (with backpropagation)" if "grad" in info.needs else "")
        self.cost.setText(f"Predicted: {self.steps.value()} steps × {self.samples.value()} samples "
                          f"= {self.predicted_nfe()} network evaluations{per}.")
        warnings = []
        spread = self.spread()
        if spread is not None and not spread.is_posterior:
            warnings.append(spread.reason)
        caveat = info.caveat(self._op, self.steps.value()) if info is not None and self._op is not None else None
        if caveat:
            warnings.append(caveat)  # the same sentence the run logs (the registry's, kept current there)
        self.warning.setText("\n".join(f"⚠ {w}" for w in warnings))
        self.warning.setVisible(bool(warnings))
        self.changed.emit()

    def _on_precision_chosen(self, _index: int) -> None:
        self._gpu_precision = self.precision.currentText()

    def _on_device_changed(self, *_) -> None:
        """Precision shows what will run: the CPU (and MPS) run fp32, whatever was chosen for GPUs."""
        from ..errors import DiffreconError
        from ..runtime import resolve_device

        try:
            gpu = resolve_device(self.device.currentText()).type == "cuda"
        except DiffreconError:
            gpu = False
        with QtCore.QSignalBlocker(self.precision):
            _select(self.precision, self._gpu_precision if gpu else "fp32")
        self.precision.setEnabled(gpu)
        self.precision.setToolTip("Network autocast dtype on GPU; solver state stays float32." if gpu else
                                  f"The {self.device.currentText()} device runs in fp32 (bf16 autocast is for CUDA GPUs).")

    def set_prior(self, value: str) -> None:
        """Make ``value`` (a prior's name or path) the run's prior, as choosing it in the field does."""
        _select(self.prior, value, insert_at=len(PRIORS))
        self._on_any_change()

    def _on_prior_activated(self, index: int) -> None:
        if self.prior.itemText(index) == _FOLDER:
            folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Prior folder (card.json + weights)")
            _select(self.prior, folder or PRIORS[0], insert_at=len(PRIORS))
        self._on_any_change()

    # ------------------------------------------------------------------ persistence
    def save_settings(self, settings: QtCore.QSettings) -> None:
        # the recipe and runtime's one dict; the precision is the one chosen for a GPU (CPUs run fp32)
        settings.setValue("run/config", json.dumps({**self.config().to_dict(), "precision": self._gpu_precision}))

    def restore_settings(self, settings: QtCore.QSettings) -> None:
        raw = settings.value("run/config")
        if not raw:
            return
        try:
            self.set_config(RunConfig.from_dict(json.loads(raw)))
        except (InputError, ValueError, TypeError):  # stale settings from another version are ignored
            pass


def _quality_tip() -> str:
    fast, full = resolve("fast"), resolve("full")
    def start(p):
        return "warm-started from TV (a seed spread)" if p["warm_start"] != "none" else "from noise (a posterior std)"

    return (f"Off: the fast preset, {fast['solver']} with {fast['steps']} steps, {start(fast)}: seconds. On: full "
            f"quality, {full['solver']} with {full['steps']} steps, {start(full)}: minutes on a CPU. Either sets the "
            "solver, steps, parameters and warm start; edits after that override them.")


FULL_NAME_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


class _FullNameDelegate(QtWidgets.QStyledItemDelegate):
    """The solver list shows each solver's whole name, not the closed box's short one."""

    def initStyleOption(self, option, index) -> None:  # noqa: N802 - Qt's name
        super().initStyleOption(option, index)
        option.text = index.data(FULL_NAME_ROLE) or option.text


def _spin(lo: int, hi: int, value: int) -> QtWidgets.QSpinBox:
    box = QtWidgets.QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box


def _select(box: QtWidgets.QComboBox, text: str, insert_at: int | None = None) -> None:
    index = box.findText(text)
    if index < 0 and insert_at is not None and text:
        box.insertItem(insert_at, text)
        index = insert_at
    if index >= 0:
        box.setCurrentIndex(index)
