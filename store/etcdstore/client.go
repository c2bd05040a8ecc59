package etcdstore

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// newClient connects to o.Endpoints with every request requiring a
// leader (leaderRequired).
func newClient(ctx context.Context, o Options) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            o.Endpoints,
		Username:             o.Username,
		Password:             o.Password,
		TLS:                  o.TLS,
		DialTimeout:          o.DialTimeout,
		DialKeepAliveTime:    o.DialTimeout,
		DialKeepAliveTimeout: o.DialTimeout,
		Logger:               zap.NewNop(),
		Context:              context.WithoutCancel(ctx),
		DialOptions:          []grpc.DialOption{grpc.WithChainUnaryInterceptor(leaderRequired)},
	})
}

// rangeMethod is the gRPC method of reads.
const rangeMethod = "/etcdserverpb.KV/Range"

// minReadTry is the shortest time a try of a read is given.
const minReadTry = 500 * time.Millisecond

// noLeaderPause spaces the tries of a request every member refused for
// want of a leader (an election is under way).
const noLeaderPause = 25 * time.Millisecond

// leaderRequired runs under the etcd client's own interceptor, once per
// try of a request. Every request requires a leader: a member cut off
// from its peers (alive, reachable, with no leader) refuses it at once
// ("no leader") instead of holding it until the request's timeout. A
// request refused so is sent again at once, until it is answered or its
// context ends: the client's round-robin balancer picks the next member
// for each try, so it lands on one that has a leader. The etcd client
// retries reads itself but not writes (a write may have been applied
// before the error); a write refused for want of a leader was never
// proposed, so sending it again is safe.
//
// A read is also given a part of its time per try: a member that was the
// leader when it was cut off holds a read until it steps down, which must
// not use up the whole request; reading again elsewhere is harmless.
func leaderRequired(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = clientv3.WithRequireLeader(ctx)
	read := method == rangeMethod
	for try := 1; ; try++ {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && read {
			tctx, cancel = context.WithTimeout(ctx, max(time.Until(dl)/2, minReadTry))
		}
		err := invoker(tctx, method, req, reply, cc, opts...)
		timedOut := tctx.Err() != nil
		cancel()
		if err != nil && read && timedOut && ctx.Err() == nil {
			continue
		}
		if err == nil || !isNoLeader(err) || ctx.Err() != nil {
			return err
		}
		if try%3 == 0 {
			// Every member was asked: wait for an election.
			t := time.NewTimer(noLeaderPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
	}
}

// isNoLeader reports whether err is a member's refusal for want of a
// leader (as a gRPC status or as the client's error).
func isNoLeader(err error) bool {
	return errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(rpctypes.Error(err), rpctypes.ErrNoLeader)
}
