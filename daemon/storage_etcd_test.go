package daemon

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// TestStoreContractEtcd checks the Store contract on the etcd store of
// fleet mode, on a three-member cluster, each subtest under a prefix of
// its own. The store fences PutToken on holding the grant, so the store
// first campaigns for the grants the contract writes.
func TestStoreContractEtcd(t *testing.T) {
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true})
	n := 0
	storeContract(t, func(t *testing.T) Store {
		n++
		st, err := etcdstore.Open(context.Background(), etcdstore.Options{
			Endpoints: c.Endpoints(), Prefix: fmt.Sprintf("/contract%d/", n), Instance: "a",
			Key: bytes.Repeat([]byte{1}, store.KeySize), LeaseTTL: 2 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.SetGrants(context.Background(), map[string]string{"g": "fp", "h": "fp"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !st.Holds("g", 0) || !st.Holds("h", 0) {
			if time.Now().After(deadline) {
				t.Fatal("the etcd store did not take its grants")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return st
	})
}
