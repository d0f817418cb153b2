"""The GAN trainer: refiner G, discriminator D and task net, on the release's schedule.

One `tf.function` per network update (STYLE §6), each a GradientTape over that network's
variables only. All mutable state is in one `tf.train.Checkpoint`; the HDF5 history buffer
is committed right before each checkpoint, and every random draw is f(seed, step), so a
run killed at any point resumes bit-exactly from its last checkpoint.

The steps' only branches are on Python values (`adversarial`, the replica count), so they
are traced with `autograph=False`: converting Keras' layer code cost ≈ 40 % of the tracing
time of a run's first iterations.

Losses are reduced with the GLOBAL batch size (`tf.nn.compute_average_loss`) so the run is
the same under a `tf.distribute` strategy with several replicas.
"""

import pathlib
import time
from typing import Dict

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from simgan_histo.models import discriminator as discriminator_lib
from simgan_histo.models import refiner as refiner_lib
from simgan_histo.models import task_net as task_net_lib
from simgan_histo.training import importance
from simgan_histo.training import losses
from simgan_histo.training import task_loss


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def to_model_range(images):
    """uint8 RGB (0..255) → float32 in [-1, 1]."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def from_model_range(images) -> np.ndarray:
    """float in [-1, 1] → uint8 RGB, rounded."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_optimizer(kind: str, learning_rate: float, momentum: float, max_grad_norm: float):
    """Release: Momentum 0.95 with per-variable clip_by_norm(50); Adam for the CPU presets."""
    if kind == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, clipnorm=max_grad_norm)
    return keras.optimizers.Adam(learning_rate, clipnorm=max_grad_norm)


class RefinerTrainer:
    """Owns G, D, the task net, their optimisers, the checkpoint and the summary writer."""

    def __init__(self, config, workdir, strategy=None):
        self.config, self.gan, self.task_config = config, config.gan, config.task
        self.workdir = pathlib.Path(workdir)
        self.strategy = strategy or tf.distribute.get_strategy()
        patch = config.synthesis.patch_size
        if patch % config.task.stride:
            raise ValueError(f"SynthesisConfig.patch_size={patch}: the task net needs a multiple "
                             f"of its stride {config.task.stride} (L_hard runs it on whole "
                             "patches)")
        gan = self.gan
        # Models take the Keras policy in force when built (tf_setup.configure sets it).
        self.precision = keras.mixed_precision.global_policy().name
        if self.precision != config.runtime.precision:
            logging.warning("config asks for precision %s but the Keras policy is %s (call "
                            "tf_setup.configure(config.runtime) first); training in %s",
                            config.runtime.precision, self.precision, self.precision)
        # Initial weights are a function of the seed too, so two runs of one config agree.
        keras.utils.set_random_seed(config.runtime.seed)
        with self.strategy.scope():
            self.refiner = refiner_lib.build_refiner(config.refiner)
            self.discriminator = discriminator_lib.build_discriminator(config.discriminator)
            # The configured architecture, so the pipeline's task net can start from this one;
            # without the hv head, which only the task stage trains (its stage key ignores it).
            self.task_net = task_net_lib.build_task_net(
                task_net_lib.without_hv_head(config.task))
            self.refiner_optimizer = make_optimizer(
                gan.optimizer, gan.refiner_learning_rate, gan.momentum, gan.max_grad_norm)
            self.discriminator_optimizer = make_optimizer(
                gan.optimizer, gan.discriminator_learning_rate, gan.momentum, gan.max_grad_norm)
            self.task_optimizer = keras.optimizers.Adam(gan.task_learning_rate)
            for optimizer, model in ((self.refiner_optimizer, self.refiner),
                                     (self.discriminator_optimizer, self.discriminator),
                                     (self.task_optimizer, self.task_net)):
                optimizer.build(model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.checkpoint = tf.train.Checkpoint(
            step=self.step, refiner=self.refiner, discriminator=self.discriminator,
            task_net=self.task_net, refiner_optimizer=self.refiner_optimizer,
            discriminator_optimizer=self.discriminator_optimizer,
            task_optimizer=self.task_optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.workdir / "checkpoints",
                                                  max_to_keep=3)
        self.roi = task_loss.roi_weight_map(patch, patch, config.task.roi_border_fraction,
                                            config.task.roi_border_weight)

    def restore_or_initialize(self) -> int:
        """Restores the newest checkpoint if any; returns the iteration to continue from."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("resumed from %s at iteration %d", latest, int(self.step.numpy()))
        return int(self.step.numpy())  # .numpy(): int() rejects a MirroredVariable

    # -- helpers used inside the steps -------------------------------------------------------

    def _task_per_sample(self, images, masks, training: bool):
        logits = self.task_net(images, training=training)["logits"]
        targets = task_loss.targets_from_mask(masks, self.task_config.detection_dilation,
                                              self.task_config.detection_target)
        return task_loss.per_sample_loss(logits, targets, self.roi)["total"]

    def _average(self, per_sample, global_size: int):
        return tf.nn.compute_average_loss(per_sample, global_batch_size=global_size)

    def _weights(self, images, references):
        logits = self.discriminator({"image": images, "reference": references}, training=False)
        return importance.importance_weights(
            logits, self.gan.importance_ratio, self.gan.importance_clip, from_logits=True)

    # -- one update per network --------------------------------------------------------------

    def _refiner_update(self, image, reference, mask, adversarial: bool, global_size: int):
        gan = self.gan
        with tf.GradientTape() as tape:
            refined = tf.cast(self.refiner({"image": image, "reference": reference},
                                           training=True), tf.float32)
            reg = losses.elastic_net_loss(refined, image, gan.lambda_l1, gan.lambda_l2)
            adv = tf.zeros_like(reg)
            hard = tf.zeros_like(reg)
            if adversarial:
                logits = self.discriminator({"image": refined, "reference": reference},
                                            training=False)
                adv = losses.refiner_adversarial_loss(logits, gan.adversarial_loss)
                if gan.use_hard_examples:
                    task = self._task_per_sample(refined, mask, training=False)
                    hard = losses.hard_example_loss(task, gan.gamma)
            total = losses.refiner_loss(reg, adv, hard, gan.alpha, gan.beta)
            loss = self._average(total, global_size)
        variables = self.refiner.trainable_variables
        self.refiner_optimizer.apply(tape.gradient(loss, variables), variables)
        scalars = {"refiner/loss": loss, "refiner/reg": self._average(reg, global_size),
                   "refiner/adv": self._average(adv, global_size),
                   "refiner/hard": self._average(hard, global_size),
                   "refiner/mean_abs_delta": self._average(
                       tf.reduce_mean(tf.abs(refined - image), axis=[1, 2, 3]), global_size)}
        return scalars, refined

    def _discriminator_update(self, real_image, real_reference, fake_image, fake_reference,
                              global_real: int, global_fake: int):
        with tf.GradientTape() as tape:
            real = self.discriminator({"image": real_image, "reference": real_reference},
                                      training=True)
            fake = self.discriminator({"image": fake_image, "reference": fake_reference},
                                      training=True)
            real_loss = self._average(losses.local_adversarial_loss(real, True), global_real)
            fake_loss = self._average(losses.local_adversarial_loss(fake, False), global_fake)
            loss = real_loss + fake_loss
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply(tape.gradient(loss, variables), variables)
        real_correct = tf.reduce_mean(tf.cast(real > 0, tf.float32), axis=[1, 2, 3])
        fake_correct = tf.reduce_mean(tf.cast(fake < 0, tf.float32), axis=[1, 2, 3])
        return {"discriminator/loss": loss,
                "discriminator/accuracy_real": self._average(real_correct, global_real),
                "discriminator/accuracy_fake": self._average(fake_correct, global_fake)}

    def _task_update(self, image, reference, mask, use_weights: bool, global_size: int):
        if use_weights:
            weights = self._weights(image, reference)
        else:
            weights = tf.ones([tf.shape(image)[0]], tf.float32)
        with tf.GradientTape() as tape:
            per_sample = self._task_per_sample(image, mask, training=True)
            loss = self._average(weights * per_sample, global_size)
        variables = self.task_net.trainable_variables
        self.task_optimizer.apply(tape.gradient(loss, variables), variables)
        return {"task/loss": loss, "weights/mean": self._average(weights, global_size)}

    # -- distribution wrappers (one tf.function per network) -----------------------------------

    def distribute(self, *arrays):
        """Host arrays → step inputs: split along the batch across replicas (one device:
        plain tensors). Every `*_step` takes its batch arrays through this."""
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return tuple(tf.constant(a) for a in arrays)
        tensors = [tf.constant(a) for a in arrays]
        for tensor in tensors:
            if tensor.shape[0] % replicas:
                raise ValueError(f"a batch of {tensor.shape[0]} does not split over {replicas} "
                                 "replicas: make GanTrainConfig.batch_size (and its history "
                                 "share) multiples of the replica count")

        def split(context):
            index = context.replica_id_in_sync_group
            return tuple(tf.split(t, replicas)[index] for t in tensors)

        return self.strategy.experimental_distribute_values_from_function(split)

    def _reduce(self, scalars):
        return {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for key, value in scalars.items()}

    @tf.function(autograph=False)
    def refiner_step(self, image, reference, mask, adversarial: bool):
        scalars, refined = self.strategy.run(
            lambda i, r, m: self._refiner_update(to_model_range(i), to_model_range(r), m,
                                                 adversarial, self._global_batch),
            args=(image, reference, mask))
        if self.strategy.num_replicas_in_sync > 1:
            refined = self.strategy.gather(refined, axis=0)
        return self._reduce(scalars), refined

    @tf.function(autograph=False)
    def discriminator_step(self, real_image, real_reference, fake_image, fake_reference):
        scalars = self.strategy.run(
            lambda a, b, c, d: self._discriminator_update(
                to_model_range(a), to_model_range(b), to_model_range(c), to_model_range(d),
                self._global_real, self._global_fake),
            args=(real_image, real_reference, fake_image, fake_reference))
        return self._reduce(scalars)

    @tf.function(autograph=False)
    def task_step(self, image, reference, mask, use_weights: bool):
        scalars = self.strategy.run(
            lambda i, r, m: self._task_update(to_model_range(i), to_model_range(r), m,
                                              use_weights, self._global_task),
            args=(image, reference, mask))
        return self._reduce(scalars)

    @tf.function(autograph=False)
    def refine(self, image, reference):
        """G(I, S) for uint8 inputs, in [-1, 1] (no update)."""
        return self.refiner({"image": to_model_range(image),
                             "reference": to_model_range(reference)}, training=False)

    @tf.function(autograph=False)
    def score(self, image, reference):
        """Eq. 5 importance weights of uint8 (X, S) pairs under the current D."""
        return self._weights(to_model_range(image), to_model_range(reference))

    def set_batch_sizes(self, refiner: int, real: int, fake: int, task: int) -> None:
        """Global batch sizes, fixed for the run (the steps' loss denominators)."""
        self._global_batch, self._global_real = refiner, real
        self._global_fake, self._global_task = fake, task

    def save(self, buffer, iteration: int) -> None:
        """Commits the buffer, then the checkpoint, so the two always agree."""
        if buffer is not None:
            buffer.commit(iteration)
        self.manager.save(checkpoint_number=iteration)


def check_finite(scalars: Dict[str, float], iteration: int) -> None:
    bad = {key: value for key, value in scalars.items() if not np.isfinite(value)}
    if bad:
        raise NonFiniteLossError(
            f"non-finite losses at iteration {iteration}: {bad}. The run stopped; its last "
            "good checkpoint is kept. Lower the learning rates or check the input tissue.")


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start
