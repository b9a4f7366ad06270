//! Closed forms of queueing theory the simulator must reproduce, in units of the mean service
//! time (service rate 1). Each is the textbook result it is named after:
//!
//! * M/M/1 (Kleinrock, *Queueing Systems* vol. 1, 3.2): response time Exp(1 - rho), so mean
//!   1 / (1 - rho) and p-quantile -ln(1 - p) / (1 - rho).
//! * GI/M/1 with Erlang-N arrivals (round robin over N servers of a Poisson stream; Kleinrock
//!   6.4): response time Exp(1 - sigma), sigma the root in (0, 1) of sigma = A*(1 - sigma), which
//!   for Erlang-N interarrivals of rate lambda per server is (N lambda / (N lambda + 1 - sigma))^N.
//! * M/M/c (Erlang C): the probability of waiting, and a response time that is service plus a
//!   wait that is 0 or Exp(c - a).
//! * The supermarket model (Mitzenmacher 1996; Vvedenskaya, Dobrushin and Karpelevich 1996): in
//!   the limit of many servers, join the shorter of d sampled queues; the fraction of queues with
//!   at least i jobs is lambda^((d^i - 1) / (d - 1)).
//! * The machine-repairman model (finite-source M/M/1, Kleinrock 3.10; Lazowska et al.,
//!   *Quantitative System Performance*, 7): N users thinking Exp(Z) between requests to one
//!   exponential server. Mean value analysis gives it exactly: R(k) = 1 + Q(k - 1),
//!   X(k) = k / (R(k) + Z), Q(k) = X(k) R(k).

/// The `p` quantile of a distribution given its survival function, by bisection on [0, 10^4].
pub fn quantile(survival: impl Fn(f64) -> f64, p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1e4);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if survival(mid) > 1.0 - p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// M/M/1 at load `rho`: (mean response time, survival of the response time).
pub fn mm1(rho: f64) -> (f64, impl Fn(f64) -> f64) {
    let rate = 1.0 - rho;
    (1.0 / rate, move |x: f64| (-rate * x).exp())
}

/// Round robin of a Poisson stream over `n` servers at load `rho` each (Erlang-n arrivals at
/// every server): (mean response time, survival of the response time).
pub fn round_robin(n: u32, rho: f64) -> (f64, impl Fn(f64) -> f64) {
    let k = f64::from(n);
    let mut sigma: f64 = 0.5;
    for _ in 0..10_000 {
        sigma = (k * rho / (k * rho + (1.0 - sigma))).powf(k);
    }
    let rate = 1.0 - sigma;
    (1.0 / rate, move |x: f64| (-rate * x).exp())
}

/// M/M/c at load `rho` per server: (probability of waiting, mean response time, survival of the
/// response time).
pub fn erlang_c(c: u32, rho: f64) -> (f64, f64, impl Fn(f64) -> f64) {
    let a = rho * f64::from(c);
    // Erlang B by its recursion, then C from B.
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    let pw = b / (1.0 - rho * (1.0 - b));
    let rate = f64::from(c) - a; // c mu - lambda
    let t = pw / rate + 1.0;
    // T = S + Wq: S ~ Exp(1); Wq = 0 with probability 1 - pw, else Exp(rate).
    let survival = move |x: f64| {
        let both = if (rate - 1.0).abs() < 1e-12 {
            (1.0 + x) * (-x).exp()
        } else {
            (rate * (-x).exp() - (-rate * x).exp()) / (rate - 1.0)
        };
        (1.0 - pw) * (-x).exp() + pw * both
    };
    (pw, t, survival)
}

/// The supermarket model at load `lambda` with `d` choices: (mean response time, survival of
/// the response time). A job joins a queue of k with probability s_k^d - s_(k+1)^d and then
/// waits an Erlang(k + 1, 1) time.
pub fn supermarket(lambda: f64, d: i32) -> (f64, impl Fn(f64) -> f64) {
    let s_i = move |i: i32| lambda.powf((f64::from(d).powi(i) - 1.0) / f64::from(d - 1));
    let t: f64 = (1..40).map(s_i).sum::<f64>() / lambda;
    let survival = move |x: f64| {
        (0..40)
            .map(|k| {
                let p = s_i(k).powi(d) - s_i(k + 1).powi(d);
                let mut term = (-x).exp();
                let mut sum = term;
                for j in 1..=k {
                    term *= x / f64::from(j);
                    sum += term;
                }
                p * sum
            })
            .sum::<f64>()
    };
    (t, survival)
}

/// The machine-repairman model: `n` users with mean think time `z` (in units of the mean
/// service time): (mean response time, throughput per mean service time).
pub fn machine_repairman(n: u32, z: f64) -> (f64, f64) {
    let (mut r, mut x, mut q) = (0.0, 0.0, 0.0);
    for k in 1..=n {
        r = 1.0 + q;
        x = f64::from(k) / (r + z);
        q = x * r;
    }
    (r, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        assert!((mm1(0.5).0 - 2.0).abs() < 1e-12);
        assert!((quantile(mm1(0.9).1, 0.99) - 10.0 * 100f64.ln()).abs() < 1e-6);
        assert!((round_robin(16, 0.9).0 - 5.4796).abs() < 1e-3);
        assert!((erlang_c(4, 0.9).1 - 2.96938).abs() < 1e-4);
        assert!((erlang_c(16, 0.9).1 - 1.36959).abs() < 1e-4);
        assert!((supermarket(0.9, 2).0 - 2.6141).abs() < 1e-3);
        // One server: Erlang C is M/M/1.
        assert!((erlang_c(1, 0.7).1 - mm1(0.7).0).abs() < 1e-12);
        // The published example: N = 10, Z = 9 (p0 = 0.1680, X = 0.832, R = 3.019).
        let (r, x) = machine_repairman(10, 9.0);
        assert!((r - 3.0187).abs() < 1e-4 && (x - 0.83204).abs() < 1e-4);
        assert!((1.0 - x - 0.1680).abs() < 1e-3);
        // One user never waits.
        assert_eq!(machine_repairman(1, 4.0).0, 1.0);
    }
}
