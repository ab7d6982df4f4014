from clap_train.rng import Domain, rng_for


def test_draws_depend_on_seed_domain_and_position_only():
    a = rng_for(7, Domain.SAMPLE, 3, 4).random(4)
    assert (a == rng_for(7, Domain.SAMPLE, 3, 4).random(4)).all()
    others = [rng_for(7, Domain.SHUFFLE, 3, 4), rng_for(8, Domain.SAMPLE, 3, 4), rng_for(7, Domain.SAMPLE, 3, 5)]
    assert all((r.random(4) != a).all() for r in others)
    assert len({int(d) for d in Domain}) == len(Domain)
