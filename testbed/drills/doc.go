// Package drills runs failure drills on a testbed (package testbed): node
// loss, zone loss, a partition, a power cycle of every node, and a rolling
// restart. During each drill a writer changes an app's config vars through
// varying nodes' APIs and reads them back linearizably, and a prober sends
// HTTP requests steadily; afterwards the drill reports the RTO (time until
// everything serves again), failed requests, acknowledged writes that were
// lost (there must be none), whether the nodes converged, and whether the
// writer's history is linearizable (checked with porcupine).
//
// The prober's targets come from a Targets function. Until the router
// (issue 5) exists it probes each in-service node's API /health; once the
// router serves apps, RouterTargets (an app deployed on the cluster,
// through every node's router port) replaces HealthTargets in one line of
// Run. Likewise dyno placement is not checked until dynos exist (issue 3);
// each report says so.
package drills
