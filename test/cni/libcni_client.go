// A minimal container runtime's network side: it calls CNI plugins through libcni, the library
// containerd and CRI-O use, so that kdp-cni is tested the way the kubelet's runtime runs it.
//
//	libcni_client add|check|del CONFLIST NETNS CONTAINER_ID IFNAME [K=V;K=V]
//
// Plugins are looked up in $CNI_PATH (colon-separated). add prints the result as JSON.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: libcni_client add|check|del CONFLIST NETNS CONTAINER_ID IFNAME [K=V;...]")
		os.Exit(2)
	}
	cmd, file, netns, id, ifname := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conflist:", err)
		os.Exit(1)
	}
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname}
	if len(os.Args) > 6 {
		for _, kv := range strings.Split(os.Args[6], ";") {
			if p := strings.SplitN(kv, "=", 2); len(p) == 2 {
				rt.Args = append(rt.Args, [2]string{p[0], p[1]})
			}
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(os.Getenv("CNI_PATH"), ":"), os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()
	switch cmd {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fmt.Fprintln(os.Stderr, "add:", err)
			os.Exit(1)
		}
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fmt.Fprintln(os.Stderr, "check:", err)
			os.Exit(1)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fmt.Fprintln(os.Stderr, "del:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown command", cmd)
		os.Exit(2)
	}
}
