"""Cache maintenance only: keep ``Reward.targeting`` (the rewards' listing cache,
``catalogue.services.reward_listing_refresh``) in step with the targeting links when they
change through a many-to-many manager or vanish with their target.

No rule lives here and nothing else is done by signals. Link rows written through a model's
``save()``/``delete()`` (RewardSegmentTarget, PaymentConfig) and rewards saved through
``Reward.save()`` refresh the cache themselves; bulk writers (the importer, the bench
loaders) call the refresh once at the end. What the ORM does without ``save()``,
``delete()`` or signals (``QuerySet.update``/``delete`` on link rows, ``bulk_create``, raw
SQL) must call ``reward_listing_refresh`` too; ``manage.py check_catalogue`` finds drift.

- ``m2m_changed`` on the four targeting relations (``reward.labels.add(…)``,
  ``label.rewards.remove(…)``, the admin's form saving ``card_series`` …): ``add`` uses
  ``bulk_create`` on the link table and ``remove``/``clear`` a queryset delete, so no
  ``save()``/``delete()`` runs.
- Deleting a target (label, card series, tier, partition; a segment's partitions go with
  it) deletes its link rows by cascade, without ``delete()`` or ``m2m_changed``: the
  rewards it targeted are noted before and refreshed after.
"""

from django.db.models.signals import m2m_changed, post_delete, pre_delete

from .models import CardSeries, Label, Partition, Reward, Tier
from .services import reward_listing_refresh

TARGETING_RELATIONS = (Reward.target_partitions, Reward.card_series, Reward.labels, Reward.target_tiers)
# A target model → its relation to the rewards it targets.
TARGET_REWARDS = {Partition: "targeted_rewards", CardSeries: "rewards", Label: "rewards", Tier: "targeted_rewards"}
_NOTED = "_listing_cache_reward_ids"


def targeting_links_changed(sender, instance, action, reverse, pk_set, using, **kwargs) -> None:
    if not reverse:  # reward.labels.add(label): one reward
        if action in ("post_add", "post_remove", "post_clear"):
            reward_listing_refresh(reward_ids=[instance.pk], using=using)
        return
    # label.rewards.add(reward): the rewards are pk_set (clear() does not give them).
    if action == "pre_clear":
        relation = next(r for r in TARGETING_RELATIONS if r.through is sender)
        rewards = Reward.objects.using(using).filter(**{relation.field.name: instance})
        setattr(instance, _NOTED, list(rewards.values_list("pk", flat=True)))
    elif action in ("post_add", "post_remove"):
        reward_listing_refresh(reward_ids=pk_set, using=using)
    elif action == "post_clear":
        reward_listing_refresh(reward_ids=instance.__dict__.pop(_NOTED, ()), using=using)


def target_deleting(sender, instance, using, **kwargs) -> None:
    rewards = getattr(instance, TARGET_REWARDS[sender])
    setattr(instance, _NOTED, list(rewards.using(using).values_list("pk", flat=True)))


def target_deleted(sender, instance, using, **kwargs) -> None:
    reward_ids = instance.__dict__.pop(_NOTED, ())
    if reward_ids:
        reward_listing_refresh(reward_ids=reward_ids, using=using)


def connect() -> None:
    """Called once by CatalogueConfig.ready()."""
    for relation in TARGETING_RELATIONS:
        m2m_changed.connect(targeting_links_changed, sender=relation.through,
                            dispatch_uid=f"listing_cache_{relation.through._meta.label}")
    for model in TARGET_REWARDS:
        pre_delete.connect(target_deleting, sender=model, dispatch_uid=f"listing_cache_pre_{model._meta.label}")
        post_delete.connect(target_deleted, sender=model, dispatch_uid=f"listing_cache_post_{model._meta.label}")
